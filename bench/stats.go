package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Latencies are percentiles in milliseconds.
type Latencies struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func latencies(ds []time.Duration) Latencies {
	if len(ds) == 0 {
		return Latencies{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := min(len(s)-1, int(q*float64(len(s))))
		return round(float64(s[i])/float64(time.Millisecond), 2)
	}
	return Latencies{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: at(1)}
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

// cpuTime is the user+system CPU time a process has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name: state is the 3rd of stat, utime
	// the 14th and stime the 15th.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("unreadable /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unreadable /proc/%d/stat", pid)
	}
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// memory returns a process's resident set now and its peak, in MB.
func memory(pid int) (rss, peak float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("unreadable /proc/%d/status: %s", pid, line)
		}
		if k == "VmRSS" {
			rss = round(kb/1024, 1)
		} else {
			peak = round(kb/1024, 1)
		}
	}
	return rss, peak, nil
}

// servers are the RabbitMQ and Redis processes on this machine, found by
// name, so the benchmark can say what each side spends per job. Servers
// elsewhere are simply not measured.
type servers struct{ rabbit, redis []int }

func findServers() servers {
	var s servers
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(comm)) {
		case "beam.smp":
			s.rabbit = append(s.rabbit, pid)
		case "redis-server":
			s.redis = append(s.redis, pid)
		}
	}
	return s
}

// cpu is the CPU time the servers have used so far: RabbitMQ's and Redis's.
func (s servers) cpu() (rabbit, rds time.Duration) {
	for _, pid := range s.rabbit {
		d, _ := cpuTime(pid)
		rabbit += d
	}
	for _, pid := range s.redis {
		d, _ := cpuTime(pid)
		rds += d
	}
	return rabbit, rds
}

// CPUPer10k is the CPU seconds each process spent per 10,000 jobs in one
// measurement.
type CPUPer10k struct {
	RabbitMQ float64 `json:"rabbitmq"`
	Redis    float64 `json:"redis"`
	API      float64 `json:"api,omitempty"`
	Worker   float64 `json:"worker,omitempty"`
	Client   float64 `json:"bench_client"`
}

// meter measures CPU over one measurement.
type meter struct {
	srv               servers
	pids              []int // the API and worker, when measured
	rabbit, rds, self time.Duration
	own               []time.Duration
}

func startMeter(srv servers, pids ...int) *meter {
	m := &meter{srv: srv, pids: pids}
	m.rabbit, m.rds = srv.cpu()
	m.self, _ = cpuTime(os.Getpid())
	for _, pid := range pids {
		d, _ := cpuTime(pid)
		m.own = append(m.own, d)
	}
	return m
}

// per10k returns the CPU spent since startMeter per 10,000 of n jobs: the
// servers, this program, and the pids given to startMeter (API, worker).
func (m *meter) per10k(n int) (CPUPer10k, []float64) {
	f := func(d time.Duration) float64 { return round(d.Seconds()*10000/float64(n), 2) }
	rabbit, rds := m.srv.cpu()
	self, _ := cpuTime(os.Getpid())
	c := CPUPer10k{RabbitMQ: f(rabbit - m.rabbit), Redis: f(rds - m.rds), Client: f(self - m.self)}
	var own []float64
	for i, pid := range m.pids {
		d, _ := cpuTime(pid)
		own = append(own, f(d-m.own[i]))
	}
	return c, own
}
