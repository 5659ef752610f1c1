package config_test

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/warrenhq/warren/config"
)

// yamlPaths returns the YAML key of every leaf setting of t, dotted.
func yamlPaths(t reflect.Type, prefix string, out map[string]bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		out[key] = true
		if f.Type.Kind() == reflect.Struct {
			yamlPaths(f.Type, key+".", out)
		}
	}
}

func TestEverySettingIsAYAMLKey(t *testing.T) {
	paths := map[string]bool{}
	yamlPaths(reflect.TypeFor[config.Config](), "", paths)
	seen := map[string]bool{}
	for _, s := range config.Settings() {
		if !paths[s.Key] {
			t.Errorf("setting %s (%s) is no YAML key of Config", s.Key, s.Env)
		}
		if seen[s.Key] || seen[s.Env] {
			t.Errorf("setting %s or %s declared twice", s.Key, s.Env)
		}
		seen[s.Key], seen[s.Env] = true, true
		if !strings.HasPrefix(s.Env, "WARREN_") || (s.Flag != "") != (s.Usage != "") {
			t.Errorf("setting %s: env %s, flag %q, usage %q", s.Key, s.Env, s.Flag, s.Usage)
		}
	}
}

// shortDuration writes Go's duration text as people do: 168h0m0s as 168h.
func shortDuration(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// TestDocsTableIsTheSettings holds docs/configuration.md's table of
// settings to the declarations: the same keys, variables, flags and
// defaults.
func TestDocsTableIsTheSettings(t *testing.T) {
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]+)`")
	type row struct{ keys, envs, flags, defaults string }
	rows := map[string]row{} // by key
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.ReplaceAll(line, `\|`, "/"), "| "), "|")
		if len(cells) < 5 {
			continue
		}
		for _, m := range code.FindAllStringSubmatch(cells[0], -1) {
			rows[m[1]] = row{cells[0], cells[1], cells[2], cells[3]}
		}
	}
	defaults := config.Default()
	declared := map[string]bool{}
	for _, s := range config.Settings() {
		declared[s.Key] = true
		r, ok := rows[s.Key]
		if !ok {
			// A map setting is documented by its entries' keys
			// (webhook.secrets.<name>.secret).
			for key, rr := range rows {
				if strings.HasPrefix(key, s.Key+".<") && strings.Contains(rr.envs, s.Env) {
					r, ok = rr, true
				}
			}
		}
		if !ok {
			t.Errorf("docs/configuration.md has no row for %s", s.Key)
			continue
		}
		if !strings.Contains(r.envs, "`"+s.Env+"`") {
			t.Errorf("%s: the docs name %s, not %s", s.Key, r.envs, s.Env)
		}
		if s.Secret != strings.Contains(r.envs, "`"+s.Env+"_FILE`") {
			t.Errorf("%s: the docs say %s; from a file: %v", s.Key, r.envs, s.Secret)
		}
		if s.Flag != "" && !strings.Contains(r.flags, "`--"+s.Flag+"`") {
			t.Errorf("%s: the docs give the flags %q, not --%s", s.Key, r.flags, s.Flag)
		}
		if s.Flag == "" && strings.Contains(r.flags, "--") && !strings.Contains(r.keys, ", ") {
			t.Errorf("%s: the docs give it the flag %s, which it has not", s.Key, r.flags)
		}
		// A limit of zero means the service's own default, which the docs
		// give and the service's tests hold.
		if d, _ := defaults.Value(s.Key); d != "" && d != "0" && !strings.Contains(r.defaults, "`"+shortDuration(d)+"`") {
			t.Errorf("%s: the default is %s, the docs say %s", s.Key, shortDuration(d), r.defaults)
		}
	}
	for key := range rows {
		if !declared[key] && !strings.Contains(key, "<") {
			t.Errorf("docs/configuration.md documents %s, which is no setting", key)
		}
	}
}

// TestChildEnvIsTheInverse checks that the environment a supervisor gives
// its workers reads back as the settings it came from.
func TestChildEnvIsTheInverse(t *testing.T) {
	cfg := config.Default()
	for key, v := range map[string]string{
		"amqp_url": "amqps://u:p@rabbit.example:5671/v", "namespace": "acme", "log_level": "debug",
		"worker.shutdown_grace": "45s", "rescue.interval": "-1s", "amqp_tls.ca_file": "/etc/ca.pem",
		"api.addr": "0.0.0.0:9", // not a worker's: not passed on
	} {
		if err := cfg.Set(key, v); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Pools = map[string]config.Pool{"image": {Concurrency: 3}, "thumbs": {Prefetch: 7}}
	env := cfg.ChildEnv()
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	back, err := config.Load(os.DevNull, environ)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range config.Settings() {
		want, _ := cfg.Value(s.Key)
		got, _ := back.Value(s.Key)
		if s.Child && got != want {
			t.Errorf("%s: %q went to the worker as %q", s.Key, want, got)
		}
	}
	if _, ok := env["WARREN_HTTP_ADDR"]; ok {
		t.Error("the API's address went to the workers")
	}
	if back.Pools["image"].Concurrency != 3 || back.Pools["thumbs"].Prefetch != 7 {
		t.Errorf("pools went to the worker as %+v", back.Pools)
	}
	for _, name := range []string{"WARREN_AMQP_TLS_CERT_FILE", "WARREN_REDIS_TLS_CA_FILE"} {
		if _, ok := env[name]; ok {
			t.Errorf("an empty setting went to the workers: %s", name)
		}
	}
	if keys := slices.Sorted(func(yield func(string) bool) {
		for k := range env {
			if !yield(k) {
				return
			}
		}
	}); len(keys) != 16 {
		t.Errorf("the workers get %v", keys)
	}
}
