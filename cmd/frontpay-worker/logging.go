package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/lmittmann/tint"
	"github.com/nordpay/frontpay-worker/internal/app"
)

// newLogger returns tint's text handler (coloured when w is a terminal) or JSON. Nothing the
// worker logs carries a token or personal data: the types that hold them redact themselves.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	l, err := app.ParseLevel(level)
	if err != nil {
		l = slog.LevelInfo
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
	}
	return slog.New(tint.NewTextHandler(w, &tint.Options{Level: l, TimeFormat: "15:04:05.000", NoColor: !isTerminal(w)}))
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
