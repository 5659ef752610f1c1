// Command rabbitcost measures what RabbitMQ spends per message for the
// choices warren makes on its side of the broker: the exchange a job is
// published to (the default exchange, or a topic exchange routing by type),
// the message's headers and properties, the mandatory flag, and the
// consumer's prefetch. It reads the broker's CPU time from /proc, so it
// needs RabbitMQ on this machine. docs/performance.md cites its figures:
//
//	go run ./bench/rabbitcost
//
// It also measures a delayed message's trip through the delay levels, the
// classic levels warren had against the quorum ones it has (delay.go).
// -run selects variants by a regular expression on their names, and -count
// repeats the delay variants, which matters on a broker others use too:
//
//	go run ./bench/rabbitcost -run '^delay' -count 3
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	run := flag.String("run", "", "run only the variants whose names match this regular expression")
	count := flag.Int("count", 1, "run each delay variant this many times and summarise the least broker CPU")
	flag.Parse()
	re, err := regexp.Compile(*run)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rabbitcost: -run:", err)
		os.Exit(2)
	}
	url := os.Getenv("WARREN_AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	br, err := findBroker(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rabbitcost: find the broker's process:", err)
		os.Exit(1)
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
		if !re.MatchString(v.name) {
			continue
		}
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
		c0 := br.cpuOrZero()
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
		c1 := br.cpuOrZero()
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
		c2 := br.cpuOrZero()
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
	if err := runDelays(conn, br, re.MatchString, max(*count, 1)); err != nil {
		fmt.Fprintln(os.Stderr, "rabbitcost:", err)
		os.Exit(1)
	}
}
