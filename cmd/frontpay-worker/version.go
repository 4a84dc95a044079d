package main

import (
	"fmt"

	"github.com/nordpay/frontpay-worker/internal/buildinfo"
	"github.com/spf13/cobra"
)

// versionLine is the build in one line, for --version.
func versionLine() string {
	bi := buildinfo.Read()
	return fmt.Sprintf("frontpay-worker %s (commit %s, %s, %s)", bi.Version, bi.Commit, bi.GoVersion, bi.Platform)
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS commit and Go version of this build",
		Long: `Print the build: the module version, the VCS commit (with -dirty when the work tree had
changes), the commit's time, the Go version and the platform. A binary built from a git work tree
knows its commit; the container image stamps version and commit at build time (deploy/Dockerfile).
The metric frontpay_build_info carries the same.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := buildinfo.Read()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "version:  %s\ncommit:   %s\n", bi.Version, bi.Commit)
			if bi.Time != "" {
				fmt.Fprintf(out, "time:     %s\n", bi.Time)
			}
			fmt.Fprintf(out, "go:       %s\nplatform: %s\n", bi.GoVersion, bi.Platform)
			return nil
		},
	}
}
