package autoscale

import "syscall"

func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		// A worker dies with the supervisor, even one killed with SIGKILL;
		// SIGTERM lets it return its jobs to the queue first. (Pdeathsig
		// follows the thread that started the child, and the Go runtime
		// only ends threads of goroutines that lock them, which the
		// supervisor's goroutines do not.)
		Pdeathsig: syscall.SIGTERM,
		// Its own process group keeps a terminal's Ctrl-C from reaching the
		// workers directly: the supervisor stops them, and must not mistake
		// their exit for a crash.
		Setpgid: true,
	}
}
