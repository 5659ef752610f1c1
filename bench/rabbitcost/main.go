// Command rabbitcost measures what RabbitMQ spends per message for the
// choices warren makes on its side of the broker: the exchange a job is
// published to (the default exchange, or a topic exchange routing by type),
// the message's headers and properties, the mandatory flag, and the
// consumer's prefetch. It reads the broker's CPU time from /proc, so it
// needs RabbitMQ on this machine. docs/performance.md cites its figures:
//
//	go run ./bench/rabbitcost
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func beamCPU() time.Duration {
	entries, _ := os.ReadDir("/proc")
	var total time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) != "beam.smp" {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		_, rest, _ := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+s) * 10 * time.Millisecond
	}
	return total
}

func main() {
	url := os.Getenv("WARREN_AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rabbitcost:", err)
		os.Exit(1)
	}
	defer conn.Close()
	n := 20000
	for _, v := range []struct {
		name     string
		kind     string // exchange kind; "" is the default exchange
		headers  bool
		mand     bool
		prefetch int
		ackEvery int  // >1: one handler acks every ackEvery messages with multiple=true
		limits   bool // the queue arguments of a warren pool queue: delivery limit, at-least-once dead-lettering
	}{
		{"default-exchange", "", false, false, 200, 0, false},
		{"topic", "topic", false, false, 200, 0, false},
		{"direct", "direct", false, false, 200, 0, false},
		{"topic+headers", "topic", true, false, 200, 0, false},
		{"topic+headers+mandatory", "topic", true, true, 200, 0, false},
		{"topic+headers+mandatory prefetch32", "topic", true, true, 32, 0, false},
		{"default prefetch32", "", false, false, 32, 0, false},
		{"default prefetch64", "", false, false, 64, 0, false},
		{"default prefetch128", "", false, false, 128, 0, false},
		{"direct+headers+mandatory prefetch128", "direct", true, true, 128, 0, false},
		{"direct+headers+mandatory prefetch128 ack x16", "direct", true, true, 128, 16, false},
		{"direct+headers+mandatory prefetch128 ack x4", "direct", true, true, 128, 4, false},
		{"direct+headers+mandatory prefetch128 limits", "direct", true, true, 128, 0, true},
		{"direct+headers+mandatory prefetch128 limits ack x16", "direct", true, true, 128, 16, true},
	} {
		ch, _ := conn.Channel()
		q := fmt.Sprintf("rabbitcost-%d", time.Now().UnixNano())
		args := amqp.Table{"x-queue-type": "quorum"}
		if v.limits {
			args["x-delivery-limit"] = int64(20)
			args["x-dead-letter-exchange"] = "amq.direct"
			args["x-dead-letter-routing-key"] = q + ".dead"
			args["x-dead-letter-strategy"] = "at-least-once"
			args["x-overflow"] = "reject-publish"
		}
		ch.QueueDeclare(q, true, false, false, false, args)
		ex, key := "", q
		if v.kind != "" {
			ex = q + ".x"
			ch.ExchangeDeclare(ex, v.kind, true, false, false, false, nil)
			for i := 0; i < 4; i++ {
				ch.QueueBind(q, fmt.Sprintf("sys.t%d", i), ex, false, nil)
			}
			key = "sys.t1"
		}
		ch.Confirm(false)
		c0 := beamCPU()
		t0 := time.Now()
		var pend []*amqp.DeferredConfirmation
		for i := 0; i < n; i++ {
			p := amqp.Publishing{DeliveryMode: 2, Body: make([]byte, 220), ContentType: "application/json"}
			if v.headers {
				p.Headers = amqp.Table{"x-warren-attempts": int32(0), "x-warren-max-attempts": int32(3), "x-warren-timeout-ms": int64(30000)}
				p.MessageId = fmt.Sprintf("id-%d", i)
				p.Type = "sys.t1"
				p.Timestamp = time.Now()
			}
			dc, err := ch.PublishWithDeferredConfirm(ex, key, v.mand, false, p)
			if err != nil {
				fmt.Fprintln(os.Stderr, "rabbitcost: publish:", err)
				os.Exit(1)
			}
			pend = append(pend, dc)
			if len(pend) == 1000 {
				for _, d := range pend[:500] {
					d.Wait()
				}
				pend = append(pend[:0], pend[500:]...)
			}
		}
		for _, d := range pend {
			d.Wait()
		}
		pub := time.Since(t0)
		c1 := beamCPU()
		// Consume with 32 handlers, as a sys worker runs 32 jobs at once.
		cc, _ := conn.Channel()
		cc.Qos(v.prefetch, 0, false)
		dl, _ := cc.Consume(q, "", false, false, false, false, nil)
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := 0
		done := make(chan struct{})
		t1 := time.Now()
		handlers := 32
		if v.ackEvery > 1 {
			handlers = 1
		}
		for k := 0; k < handlers; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				i := 0
				for d := range dl {
					i++
					if v.ackEvery <= 1 {
						d.Ack(false)
					} else if i%v.ackEvery == 0 || i == n {
						d.Ack(true)
					}
					mu.Lock()
					got++
					if got == n {
						close(done)
					}
					mu.Unlock()
				}
			}()
		}
		<-done
		cons := time.Since(t1)
		c2 := beamCPU()
		cc.Close()
		wg.Wait()
		ch.QueueDelete(q, false, false, false)
		if ex != "" {
			ch.ExchangeDelete(ex, false, false)
		}
		ch.Close()
		fmt.Printf("%-40s publish %6.0f/s beam %.2fs/10k | consume %6.0f/s beam %.2fs/10k\n", v.name,
			float64(n)/pub.Seconds(), (c1-c0).Seconds()*10000/float64(n), float64(n)/cons.Seconds(), (c2-c1).Seconds()*10000/float64(n))
	}
}
