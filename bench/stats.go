package main

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
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

// servers are the RabbitMQ and Redis processes the benchmark talks to, so
// it can say what each side spends per job: those listening on the ports of
// the AMQP and Redis URLs, or, where their sockets cannot be read, every
// process of the servers' names. Servers elsewhere are simply not measured.
type servers struct{ rabbit, redis []int }

func findServers(amqpURL, redisURL string) servers {
	comms := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			comms[pid] = strings.TrimSpace(string(comm))
		}
	}
	// Other RabbitMQs and Redises may run beside (a test suite's): only
	// the ones on our ports count, when their sockets tell.
	listening := listeners(append(ports(amqpURL, "5672"), ports(redisURL, "6379")...))
	var s, byName servers
	for pid, comm := range comms {
		var list, all *[]int
		switch comm {
		case "beam.smp":
			list, all = &s.rabbit, &byName.rabbit
		case "redis-server":
			list, all = &s.redis, &byName.redis
		default:
			continue
		}
		*all = append(*all, pid)
		if ownsSocket(pid, listening) {
			*list = append(*list, pid)
		}
	}
	if len(s.rabbit) == 0 {
		s.rabbit = byName.rabbit
	}
	if len(s.redis) == 0 {
		s.redis = byName.redis
	}
	return s
}

// ports returns the ports of a URL, or of each of a comma-separated list,
// with def where a URL names none.
func ports(rawURLs, def string) []string {
	var out []string
	for _, raw := range strings.Split(rawURLs, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			continue
		}
		out = append(out, cmp.Or(u.Port(), def))
	}
	return out
}

// listeners returns the socket inodes listening on any of the ports, from
// /proc/net/tcp and tcp6.
func listeners(ports []string) map[string]bool {
	want := map[uint64]bool{}
	for _, p := range ports {
		if n, err := strconv.ParseUint(p, 10, 16); err == nil {
			want[n] = true
		}
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if port, err := strconv.ParseUint(hexPort, 16, 16); err == nil && want[port] {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	return inodes
}

// ownsSocket reports whether one of pid's open files is one of the sockets.
func ownsSocket(pid int, sockets map[string]bool) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, _ := os.ReadDir(dir)
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && sockets[target] {
			return true
		}
	}
	return false
}

// cpu is the CPU time each server process has used so far, by pid.
func (s servers) cpu() map[int]time.Duration {
	out := map[int]time.Duration{}
	for _, pid := range append(slices.Clone(s.rabbit), s.redis...) {
		if d, err := cpuTime(pid); err == nil {
			out[pid] = d
		}
	}
	return out
}

// since sums, for the pids given, the CPU used between two readings of
// cpu; a process that was not there at both is left out (one that
// vanished would otherwise count negative).
func since(pids []int, before, after map[int]time.Duration) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		b, ok1 := before[pid]
		a, ok2 := after[pid]
		if ok1 && ok2 {
			sum += a - b
		}
	}
	return sum
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

// Total is the CPU of every process together.
func (c CPUPer10k) Total() float64 {
	return round(c.RabbitMQ+c.Redis+c.API+c.Worker+c.Client, 2)
}

// meter measures CPU over one measurement.
type meter struct {
	srv     servers
	pids    []int // the API and worker, when measured
	servers map[int]time.Duration
	self    time.Duration
	own     []time.Duration
}

func startMeter(srv servers, pids ...int) *meter {
	m := &meter{srv: srv, pids: pids}
	m.servers = srv.cpu()
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
	now := m.srv.cpu()
	self, _ := cpuTime(os.Getpid())
	c := CPUPer10k{RabbitMQ: f(since(m.srv.rabbit, m.servers, now)), Redis: f(since(m.srv.redis, m.servers, now)),
		Client: f(self - m.self)}
	var own []float64
	for i, pid := range m.pids {
		d, _ := cpuTime(pid)
		own = append(own, f(d-m.own[i]))
	}
	return c, own
}

// aof is where Redis's append-only file stands: how often it has been
// rewritten since Redis started, and its size in bytes. A rewrite forks
// Redis and writes the whole dataset out, which on a machine of few cores
// takes a core from everything else for a second or two: measured, it is
// what stalled warren's paced loads for hundreds of milliseconds in some
// rounds and not in others (docs/performance.md). Redis rewrites once the
// file has grown by a share of its size since the last rewrite, so how
// often depends on the bytes each job appends.
type aof struct {
	rewrites, size int64
	rewriting      bool // one runs now
}

// readAOF reads INFO persistence; zeros when the AOF is off.
func readAOF(ctx context.Context, rdb *redis.Client) (aof, error) {
	info, err := rdb.Info(ctx, "persistence").Result()
	if err != nil {
		return aof{}, fmt.Errorf("redis INFO persistence: %w", err)
	}
	var a aof
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "aof_rewrites":
			a.rewrites = n
		case "aof_current_size":
			a.size = n
		case "aof_rewrite_in_progress":
			a.rewriting = n == 1
		}
	}
	return a, nil
}

// AOF is what a measurement appended to Redis's append-only file.
type AOF struct {
	// Rewrites is how many rewrites of the file ran during it: ended
	// during it, or still running at its end.
	Rewrites int64 `json:"rewrites"`
	// BytesPerJob is the bytes appended per job (per message for the
	// baseline); 0 when a rewrite, which shrinks the file, hid them.
	BytesPerJob float64 `json:"bytes_per_job"`
}

// String is "N B per job, K rewrites", or without the bytes when a rewrite
// hid them.
func (a AOF) String() string {
	if a.Rewrites > 0 {
		return fmt.Sprintf("%d rewrite(s)", a.Rewrites)
	}
	return fmt.Sprintf("%.0f B per job, no rewrite", a.BytesPerJob)
}

// since is what was appended from a to b over n jobs.
func (b aof) since(a aof, n int) AOF {
	out := AOF{Rewrites: b.rewrites - a.rewrites}
	if b.rewriting {
		out.Rewrites++
	}
	if out.Rewrites == 0 && n > 0 && b.size >= a.size {
		out.BytesPerJob = round(float64(b.size-a.size)/float64(n), 0)
	}
	return out
}
