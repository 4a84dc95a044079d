//go:build !linux

package proc

import "syscall"

// childAttr: outside Linux there is no parent-death signal; the caller stops its children.
func childAttr() *syscall.SysProcAttr { return nil }
