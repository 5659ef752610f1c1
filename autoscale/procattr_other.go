//go:build !linux

package autoscale

import "syscall"

// procAttr puts each worker in its own process group, as on Linux. Other
// systems have no parent-death signal: there a worker whose supervisor was
// killed with SIGKILL keeps running until it is stopped.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
