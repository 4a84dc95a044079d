package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes. The README's "Exit codes" says the same.
const (
	exitOK = 0
	// exitCheck: the command ran and its answer is no: a lag threshold was crossed, the
	// command publish sent was answered with a failure event, or forget kept what the worker
	// still needs.
	exitCheck = 1
	// exitUsage: the command line or the environment is wrong (an unknown command, flag or
	// argument, a bad value, a configuration variable at fault); nothing was done.
	exitUsage = 2
	// exitUnreachable: NATS (or its JetStream) could not be reached.
	exitUnreachable = 3
	// exitFailure: any other failure, e.g. no result within publish --wait, a publication
	// refused, a worker that stopped on an error.
	exitFailure = 4
)

// exitCodesHelp is the exit codes as the help shows them.
const exitCodesHelp = `  0  ok
  1  the answer is no: lag --max-* crossed, publish's command failed (a failure event), or
     forget kept what the worker still needs
  2  usage: unknown command, flag or argument, a bad value, or a configuration variable at fault
  3  NATS or its JetStream unreachable
  4  any other failure (e.g. no result within publish --wait)`

// exitError is an error with its exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error { return &exitError{exitUsage, err} }

func usagef(format string, args ...any) error { return usageError(fmt.Errorf(format, args...)) }

func unreachable(err error) error { return &exitError{exitUnreachable, err} }

func checkFailed(err error) error { return &exitError{exitCheck, err} }

// exitCode is the exit code of a command's error: exitFailure unless it says otherwise.
func exitCode(err error) int {
	var e *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &e):
		return e.code
	}
	return exitFailure
}

// execute runs the command line args and returns the exit code, having printed any error to
// the root's standard error.
func execute(ctx context.Context, root *cobra.Command, args []string) int {
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	w := root.ErrOrStderr()
	fmt.Fprintf(w, "%s: %v\n", root.Name(), err)
	if code == exitUsage && cmd != nil {
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// noArgs refuses any argument: an unknown command where cmd has subcommands (with cobra's
// suggestions), an unexpected argument otherwise.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasAvailableSubCommands() {
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError(errors.New(msg))
	}
	return usagef("%s takes no arguments, got %q", cmd.Name(), args[0])
}

// exactArgs wants n arguments, described by what.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s, got %d argument(s)", cmd.Name(), what, len(args))
		}
		return nil
	}
}

// helpCommand is "help [command]", refusing a command that does not exist (cobra's own prints
// "Unknown help topic" and succeeds).
func newHelpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil || len(rest) > 0 || target == nil {
				return usagef("no command %q", strings.Join(args, " "))
			}
			return target.Help()
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var names []cobra.Completion
			if len(args) == 0 {
				for _, c := range cmd.Root().Commands() {
					if c.IsAvailableCommand() {
						names = append(names, c.Name())
					}
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	}
}

// completionCommand prints a shell's completion script.
func newCompletionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print the completion script of a shell to standard output. To load it:

  bash:        source <(frontpay-worker completion bash)
               (for every session: frontpay-worker completion bash > /etc/bash_completion.d/frontpay-worker;
               needs the bash-completion package)
  zsh:         frontpay-worker completion zsh > "${fpath[1]}/_frontpay-worker"   (compinit must be enabled)
  fish:        frontpay-worker completion fish > ~/.config/fish/completions/frontpay-worker.fish
  powershell:  frontpay-worker completion powershell | Out-String | Invoke-Expression`,
		ValidArgs: []cobra.Completion{"bash", "zsh", "fish", "powershell"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("completion takes one shell: bash, zsh, fish or powershell")
			}
			if err := cobra.OnlyValidArgs(cmd, args); err != nil {
				return usageError(err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			default:
				return root.GenPowerShellCompletionWithDesc(out)
			}
		},
	}
}
