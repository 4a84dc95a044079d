package proc

import "syscall"

// childAttr makes the kernel kill a child when this program dies, so that an interrupted run
// leaves no nats-server or worker behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
