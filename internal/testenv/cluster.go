package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartRabbitMQCluster starts n private RabbitMQ nodes, each with its
// management API, and joins them into one cluster, as an operator would with
// rabbitmqctl join_cluster. Each node may be stopped and started again
// alone: it rejoins the cluster from its data. Under -short the test is
// skipped.
func StartRabbitMQCluster(t testing.TB, n int) []*RabbitMQ {
	t.Helper()
	nodes := make([]*RabbitMQ, n)
	for i := range nodes {
		nodes[i] = StartRabbitMQ(t, ServerOptions{Management: true})
	}
	for _, r := range nodes[1:] {
		r.ctl(t, "stop_app")
		r.ctl(t, "join_cluster", nodes[0].node)
		r.ctl(t, "start_app")
	}
	err := waitFor(serverBootTimeout, func() bool {
		running, err := nodes[0].RunningNodes()
		return err == nil && len(running) == n
	})
	if err != nil {
		running, err := nodes[0].RunningNodes()
		t.Fatalf("RabbitMQ cluster: %d nodes started, %v running after %s (%v)", n, running, serverBootTimeout, err)
	}
	t.Logf("RabbitMQ cluster of %d nodes: %s", n, strings.Join(URLs(nodes), ","))
	return nodes
}

// URLs lists the nodes' AMQP URLs.
func URLs(nodes []*RabbitMQ) []string {
	urls := make([]string, len(nodes))
	for i, r := range nodes {
		urls[i] = r.URL()
	}
	return urls
}

// ctl runs rabbitmqctl against the node, as the user the node runs as (so
// that it has the node's Erlang cookie), and fails the test if it fails.
func (r *RabbitMQ) ctl(t testing.TB, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), serverBootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(r.bin), "rabbitmqctl"), append([]string{"-n", r.node}, args...)...)
	cmd.Dir = r.dir
	cmd.Env = r.env
	if r.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl -n %s %s: %v\n%s", r.node, strings.Join(args, " "), err, out)
	}
}

// RunningNodes asks the node's management API which nodes of its cluster
// run.
func (r *RabbitMQ) RunningNodes() ([]string, error) {
	var nodes []struct {
		Name    string `json:"name"`
		Running bool   `json:"running"`
	}
	if err := r.management("/api/nodes", &nodes); err != nil {
		return nil, err
	}
	var running []string
	for _, n := range nodes {
		if n.Running {
			running = append(running, n.Name)
		}
	}
	return running, nil
}

// Connections asks the node's management API for the cluster's client
// connections: the node each is on, by the connection's name (a warren
// process's is "warren-api", "warren-worker-sys" and so on).
func (r *RabbitMQ) Connections() (map[string][]string, error) {
	var conns []struct {
		Node  string `json:"node"`
		Props struct {
			Name string `json:"connection_name"`
		} `json:"client_properties"`
	}
	if err := r.management("/api/connections", &conns); err != nil {
		return nil, err
	}
	byName := map[string][]string{}
	for _, c := range conns {
		byName[c.Props.Name] = append(byName[c.Props.Name], c.Node)
	}
	return byName, nil
}

// management GETs path from the node's management API into out.
func (r *RabbitMQ) management(path string, out any) error {
	if r.mgmtPort == 0 {
		return fmt.Errorf("private RabbitMQ %s has no management API", r.node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.ManagementURL()+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s from %s: %s", path, r.node, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
