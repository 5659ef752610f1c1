package zzscratch

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
)

// Fails midway: cleanup must still kill the node.
func TestFailMidway(t *testing.T) {
	r := testenv.StartRabbitMQ(t)
	_ = r
	rd := testenv.StartRedis(t)
	_ = rd
	t.Fatal("deliberate failure")
}

// Boot fails: port taken by someone else after allocation.
func TestBootFails(t *testing.T) {
	r := testenv.StartRabbitMQ(t)
	r.Stop(t)
	l, err := net.Listen("tcp", r.URL()[len("amqp://guest:guest@"):len(r.URL())-1])
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	r.Start(t)
	t.Log(time.Since(start))
}

// Kill right after Start, then immediately Start again, a few times.
func TestKillLoop(t *testing.T) {
	if os.Getenv("LOOP") == "" {
		t.Skip()
	}
	r := testenv.StartRabbitMQ(t)
	for range 3 {
		r.Kill(t)
		r.Start(t)
	}
	r.Stop(t)
	r.Start(t)
}
