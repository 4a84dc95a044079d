// Package buildinfo tells which build of the worker is running: its version, the VCS commit it
// was built from and the Go version, for `frontpay-worker version` and the frontpay_build_info
// metric.
//
// The Go toolchain records the module version and the commit in the binary (runtime/debug
// build information) when it builds inside a git work tree. A build without one (a container
// image's build context leaves .git out) stamps them instead:
//
//	go build -ldflags "-X github.com/nordpay/frontpay-worker/internal/buildinfo.version=v1.2.3 \
//	  -X github.com/nordpay/frontpay-worker/internal/buildinfo.commit=$(git rev-parse HEAD)"
//
// A stamped value wins over the recorded one.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set by -ldflags -X at build time; empty otherwise.
var (
	version string
	commit  string
)

// Unknown stands for a value the build did not record.
const Unknown = "unknown"

// Info describes one build.
type Info struct {
	Version   string // the module version (v1.2.3), "(devel)" for a build of a work tree, or the stamped one
	Commit    string // the VCS revision, with "-dirty" when the work tree had changes; Unknown when not recorded
	Time      string // the commit's time (RFC 3339), empty when not recorded
	GoVersion string // e.g. go1.26.8
	Platform  string // GOOS/GOARCH
}

// Read returns the running binary's build information.
func Read() Info {
	in := Info{Version: Unknown, Commit: Unknown, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Commit = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && in.Commit != Unknown {
			in.Commit += "-dirty"
		}
	}
	if version != "" {
		in.Version = version
	}
	if commit != "" {
		in.Commit = commit
	}
	return in
}
