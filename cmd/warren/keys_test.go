package main_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

var (
	keyRE   = regexp.MustCompile(`(?m)^  (wrn_[A-Za-z0-9_-]{43})$`)
	entryRE = regexp.MustCompile(`(?m)^  ([a-z0-9_-]+:[a-z+]+:[0-9a-f]{64}(:\S+)?)$`)
)

// newKey runs `warren keys new` and returns the key and its entry.
func newKey(t *testing.T, args ...string) (key, entry string) {
	t.Helper()
	out, errOut, code := cli(t, nil, append([]string{"keys", "new"}, args...)...)
	k, e := keyRE.FindStringSubmatch(out), entryRE.FindStringSubmatch(out)
	if code != 0 || k == nil || e == nil {
		t.Fatalf("keys new %v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
	}
	return k[1], e[1]
}

func TestAPIKeysEndToEnd(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ciKey, ciEntry := newKey(t, "ci", "--scopes", "submit,read")
	opsKey, opsEntry := newKey(t, "ops", "--scopes", "admin")

	// Without keys, the API refuses to listen beyond loopback.
	_, errOut, code := cli(t, []string{"WARREN_NAMESPACE=" + string(env.NS), "WARREN_API_KEYS="}, "api", "--addr", "0.0.0.0:0")
	if code == 0 || !strings.Contains(errOut, "--insecure-no-auth") {
		t.Errorf("api on 0.0.0.0 without keys: exit %d, stderr %q; want a refusal naming --insecure-no-auth", code, errOut)
	}

	keysFile := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(keysFile, []byte("# the API's keys\n"+ciEntry+"\n"+opsEntry+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcWith(t, env, []string{"WARREN_API_KEYS_FILE=" + keysFile}, "dev", "--addr", "127.0.0.1:0")
	url := "http://" + p.Addr(t, "api listening")
	waitReady(t, url)
	testenv.Eventually(t, 30*time.Second, "sys.echo declared", func() bool {
		_, err := env.Store.Type(context.Background(), "sys.echo")
		return err == nil
	})
	api := "WARREN_API_URL=" + url
	var outputs []string
	run := func(extra []string, args ...string) (string, string, int) {
		t.Helper()
		out, errOut, code := cli(t, append([]string{api}, extra...), args...)
		outputs = append(outputs, out, errOut)
		return out, errOut, code
	}

	// No key: a clear refusal that says how to give one.
	_, errOut, code = run(nil, "enqueue", "sys.echo", `{"n":1}`)
	if code != 1 || !strings.Contains(errOut, "--api-key") || !strings.Contains(errOut, "unauthorized") {
		t.Errorf("enqueue without a key: exit %d, stderr %q", code, errOut)
	}
	// ci submits and reads; its name is on the job.
	withCI := []string{"WARREN_API_KEY=" + ciKey}
	out, errOut, code := run(withCI, "enqueue", "sys.echo", `{"n":1}`, "--wait")
	if code != 0 || compact(t, out) != `{"n":1}` {
		t.Fatalf("enqueue --wait with ci's key: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = run(withCI, "enqueue", "sys.sleep", `{"ms":60000}`)
	id := strings.TrimSpace(out)
	if code != 0 || !jobs.ValidID(id) {
		t.Fatalf("enqueue sys.sleep: exit %d, %q", code, out)
	}
	out, _, code = run(withCI, "job", "get", id, "-o", "json")
	var got jobs.Job
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.SubmittedBy != "ci" {
		t.Errorf("job get: exit %d, %s; want submitted_by ci", code, out)
	}
	// ci may not cancel; ops, with its key in a file, may.
	_, errOut, code = run(withCI, "job", "cancel", id)
	if code == 0 || !strings.Contains(errOut, "admin") {
		t.Errorf("cancel with ci's key: exit %d, stderr %q; want refused for lack of admin", code, errOut)
	}
	opsFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(opsFile, []byte(opsKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run([]string{"WARREN_API_KEY_FILE=" + opsFile}, "job", "cancel", id); code != 0 {
		t.Errorf("cancel with ops's key from a file: exit %d, stderr %q", code, errOut)
	}
	// The flag works too, and an unknown key is refused.
	if _, errOut, code := run(nil, "queues", "--api-key", opsKey); code != 0 {
		t.Errorf("queues --api-key: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := run(nil, "queues", "--api-key", "wrn_wrong"); code == 0 || !strings.Contains(errOut, "not one this API knows") {
		t.Errorf("queues with an unknown key: exit %d, stderr %q", code, errOut)
	}
	for _, o := range outputs {
		for _, k := range []string{ciKey, opsKey} {
			if strings.Contains(o, k) {
				t.Errorf("the CLI printed a key: %q", o)
			}
		}
	}
}
