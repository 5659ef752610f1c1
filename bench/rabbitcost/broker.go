package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// broker is the RabbitMQ process this program's connection talks to: the
// one listening on the URL's port. Other brokers may run on this machine
// (tests start and kill their own), so CPU is read from this one alone.
type broker struct {
	pid   int
	start string // its start time since boot, which tells a new process that got the pid
}

// findBroker finds the process listening on rawURL's port on this machine.
func findBroker(rawURL string) (broker, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return broker{}, fmt.Errorf("parse url: %w", err)
	}
	port, err := strconv.ParseUint(u.Port(), 10, 16)
	if u.Port() == "" {
		port, err = 5672, nil
	}
	if err != nil {
		return broker{}, fmt.Errorf("port %q: %w", u.Port(), err)
	}
	// A listening socket's inode, from /proc/net/tcp{,6}: local address is
	// field 1 (hex address:port), state field 3 (0A is LISTEN), inode field 9.
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			_, p, _ := strings.Cut(fs[1], ":")
			if n, err := strconv.ParseUint(p, 16, 16); err == nil && n == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return broker{}, fmt.Errorf("nothing listens on port %d on this machine", port)
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); inodes[l] {
				b := broker{pid: pid}
				_, start, err := b.stat()
				b.start = start
				return b, err
			}
		}
	}
	return broker{}, fmt.Errorf("no process of ours to read holds the socket listening on port %d", port)
}

// errRestarted means the broker's process is gone: it was stopped or
// restarted, and CPU read before is not comparable with CPU read after.
var errRestarted = errors.New("the broker process is gone (stopped or restarted)")

// cpu is the CPU time the broker has used since it started.
func (b broker) cpu() (time.Duration, error) {
	used, start, err := b.stat()
	if err == nil && start != b.start {
		err = errRestarted
	}
	return used, err
}

func (b broker) stat() (used time.Duration, start string, err error) {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.pid))
	if err != nil {
		return 0, "", errRestarted
	}
	// Fields after the command: state is the first, utime and stime the
	// 12th and 13th, starttime the 20th (proc(5) numbers them 3, 14, 15, 22).
	_, rest, _ := strings.Cut(string(s), ") ")
	f := strings.Fields(rest)
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond, f[19], nil
}

// cpuOrZero is cpu for the variants that read it without checking: a
// restart makes their figures wrong, as it always did.
func (b broker) cpuOrZero() time.Duration {
	d, _ := b.cpu()
	return d
}
