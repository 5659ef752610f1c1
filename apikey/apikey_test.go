package apikey_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/warrenhq/warren/apikey"
)

func TestGenerateAndLookup(t *testing.T) {
	secret, sum, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, apikey.Prefix) || len(secret) < 40 {
		t.Fatalf("secret %q: want %s and at least 256 bits", secret, apikey.Prefix)
	}
	if sum != apikey.Sum(secret) {
		t.Fatalf("Generate's sum differs from Sum")
	}
	other, otherSum, _ := apikey.Generate()
	if other == secret {
		t.Fatal("two keys alike")
	}
	ring, err := apikey.NewRing([]apikey.Key{
		{Name: "ci", SHA256: sum, Scopes: []apikey.Scope{apikey.Submit}},
		{Name: "ops", SHA256: otherSum, Scopes: []apikey.Scope{apikey.Admin}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := ring.Lookup(secret); !ok || k.Name != "ci" {
		t.Errorf("Lookup(ci's secret) = %v, %v", k.Name, ok)
	}
	if k, ok := ring.Lookup(other); !ok || k.Name != "ops" {
		t.Errorf("Lookup(ops's secret) = %v, %v", k.Name, ok)
	}
	for _, bad := range []string{"", sum, secret + "x", strings.TrimPrefix(secret, apikey.Prefix)} {
		if k, ok := ring.Lookup(bad); ok {
			t.Errorf("Lookup(%q) found %s", bad, k.Name)
		}
	}
	var none *apikey.Ring
	if _, ok := none.Lookup(secret); ok || none.Len() != 0 {
		t.Error("a nil ring holds keys")
	}
}

func TestScopesAndTypes(t *testing.T) {
	k := apikey.Key{Name: "k", Scopes: []apikey.Scope{apikey.Submit}, Types: []string{"webhook.*", "image.thumbnail"}}
	if !k.Allows(apikey.Submit) || k.Allows(apikey.Read) || k.Allows(apikey.Admin) {
		t.Errorf("submit key allows submit=%v read=%v admin=%v", k.Allows(apikey.Submit), k.Allows(apikey.Read), k.Allows(apikey.Admin))
	}
	admin := apikey.Key{Scopes: []apikey.Scope{apikey.Admin}}
	if !admin.Allows(apikey.Submit) || !admin.Allows(apikey.Read) {
		t.Error("admin does not hold submit and read")
	}
	for typ, want := range map[string]bool{
		"webhook.deliver": true, "webhook.x.y": true, "image.thumbnail": true,
		"image.resize": false, "webhooks.deliver": false, "webhook": false, "sys.spin": false,
	} {
		if got := k.AllowsType(typ); got != want {
			t.Errorf("AllowsType(%q) = %v, want %v", typ, got, want)
		}
	}
	if !admin.AllowsType("sys.spin") || admin.Limited() {
		t.Error("a key without types is limited")
	}
	star := apikey.Key{Types: []string{"*"}}
	if star.Limited() || !star.AllowsType("a.b") {
		t.Error("types [*] limits the key")
	}
}

func TestParseEntry(t *testing.T) {
	sum := apikey.Sum("s")
	k, err := apikey.ParseEntry(" billing:submit+read:" + strings.ToUpper(sum) + ":webhook.*+image.thumbnail ")
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "billing" || k.SHA256 != sum || len(k.Scopes) != 2 || k.Types[0] != "webhook.*" || k.Types[1] != "image.thumbnail" {
		t.Errorf("parsed %+v", k)
	}
	if again, err := apikey.ParseEntry(k.Entry()); err != nil || again.Entry() != k.Entry() {
		t.Errorf("Entry does not round-trip: %q → %v, %v", k.Entry(), again, err)
	}
	secret, _, _ := apikey.Generate()
	for _, bad := range []string{
		"", "ci", "ci:submit", "ci:submit:" + sum + ":a.b:extra",
		"CI:submit:" + sum, "ci:write:" + sum, "ci::" + sum, "ci:submit:abc",
		"ci:submit:" + sum + ":Webhook", "ci:submit:" + sum + ":webhook", "ci:submit:" + sum + ":web*",
		"ci:submit:" + secret, // the secret pasted where its hash belongs
	} {
		_, err := apikey.ParseEntry(bad)
		if err == nil {
			t.Errorf("ParseEntry(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error repeats the secret: %v", err)
		}
	}
}

func TestParseList(t *testing.T) {
	a, b, c := apikey.Sum("a"), apikey.Sum("b"), apikey.Sum("c")
	keys, err := apikey.ParseList("# keys\nci:submit:" + a + "\n\n  ops:admin:" + b + ",dash:read:" + c + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0].Name != "ci" || keys[1].Name != "ops" || keys[2].Name != "dash" {
		t.Errorf("ParseList = %+v", keys)
	}
	if _, err := apikey.NewRing(append(keys, apikey.Key{Name: "ci", SHA256: apikey.Sum("d"), Scopes: []apikey.Scope{apikey.Read}})); err == nil {
		t.Error("NewRing took two keys named ci")
	}
	if _, err := apikey.NewRing(append(keys, apikey.Key{Name: "other", SHA256: a, Scopes: []apikey.Scope{apikey.Read}})); err == nil {
		t.Error("NewRing took two keys with one secret")
	}
}

var secretLike = regexp.MustCompile(`^[A-Za-z0-9_-]{16,}$`)

// FuzzParseList checks that no input panics the parser, that what it
// accepts is valid and round-trips, and that an error never repeats an
// entry's third field (where a secret may have been pasted for its hash).
func FuzzParseList(f *testing.F) {
	sum := apikey.Sum("x")
	for _, s := range []string{"", "ci:submit:" + sum, "ci:submit+read:" + sum + ":webhook.*,ops:admin:" + sum,
		"# c\n\nci:read:" + sum + "\n", "a:b:c:d:e", "ci:submit:wrn_" + strings.Repeat("A", 43), ":::", "\xff:submit:" + sum} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := apikey.ParseList(s)
		if err != nil {
			// With one entry, a secret-like third field (where a secret
			// might be pasted) must not come back in the error, unless the
			// name or scopes repeat it.
			if f := strings.Split(s, ":"); !strings.ContainsAny(s, ",\n") && len(f) >= 3 && secretLike.MatchString(f[2]) &&
				!strings.Contains(f[0]+":"+f[1], f[2]) && strings.Contains(err.Error(), f[2]) {
				t.Fatalf("error repeats the third field %q: %v", f[2], err)
			}
			return
		}
		for _, k := range keys {
			if err := k.Validate(); err != nil {
				t.Fatalf("accepted an invalid key: %v", err)
			}
			again, err := apikey.ParseEntry(k.Entry())
			if err != nil || again.Entry() != k.Entry() {
				t.Fatalf("%q does not round-trip: %v", k.Entry(), err)
			}
		}
	})
}
