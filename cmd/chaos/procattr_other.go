//go:build !linux

package main

import "syscall"

// childAttr: outside Linux there is no parent-death signal; run's cleanup stops the children.
func childAttr() *syscall.SysProcAttr { return nil }
