package jobs

import (
	"fmt"
	"time"
)

// Limit bounds how fast the jobs of one type start, across every worker of
// its pool (docs/ratelimits.md): Rate for the type as a whole, Tenant for
// each value of a metadata key, or both. A job over either waits, neither
// failed nor holding a worker: its message goes round the delay levels and
// is offered again when the bucket says it may start.
type Limit struct {
	// Type is the job type limited.
	Type string `json:"type"`
	// Rate bounds the type's jobs together; nil for none.
	Rate *Rate `json:"rate,omitempty"`
	// Tenant bounds the jobs of each value of a metadata key apart; nil
	// for none.
	Tenant *TenantRate `json:"tenant,omitempty"`
}

// Rate is a token bucket: Limit jobs per Per, spaced evenly, and after a
// quiet spell up to Burst more at once. In any span of Per at most
// Limit + Burst jobs start.
type Rate struct {
	// Limit is how many jobs may start per Per; at least 1.
	Limit int `json:"limit"`
	// Per is the period, from MinLimitPer to MaxLimitPer.
	Per Duration `json:"per"`
	// Burst is how many jobs beyond the even spacing may start at once
	// after a quiet spell; zero means none (the bucket holds one token).
	Burst int `json:"burst"`
}

// TenantRate is a Rate for each value of the metadata key Key: jobs with
// metadata {"customer": "acme"} share one bucket, those of "globex"
// another, and jobs without the key share the bucket of the empty value.
type TenantRate struct {
	// Key is the metadata key whose values are the tenants.
	// Empty in a request, the API fills in its configured default
	// (api.tenant_key).
	Key string `json:"key,omitempty"`
	Rate
}

// Bounds of a limit.
const (
	// MinLimitPer and MaxLimitPer bound a Rate's period.
	MinLimitPer = time.Second
	MaxLimitPer = 24 * time.Hour
	// MaxLimitCount bounds a Rate's Limit.
	MaxLimitCount = 1_000_000
	// MaxLimitBurst bounds a Rate's Burst.
	MaxLimitBurst = 10_000
	// MaxTenantKey bounds a tenant key's length in bytes, as the API
	// bounds metadata keys.
	MaxTenantKey = 128
	// MaxLimits is how many types of a namespace may have a limit: every
	// worker reads them all every few seconds.
	MaxLimits = 200
)

// LimitError says which field of a limit is wrong, for the API to name it.
type LimitError struct {
	// Field is the field's path in the API's body, such as "tenant.per".
	Field   string
	Message string
}

func (e *LimitError) Error() string { return e.Message }

// Validate checks a limit against the bounds above.
func (l Limit) Validate() error {
	if !ValidTypeName(l.Type) {
		return &LimitError{"type", fmt.Sprintf("type %q is not a job type name (such as \"image.thumbnail\")", l.Type)}
	}
	if l.Rate == nil && l.Tenant == nil {
		return &LimitError{"limit", "a limit needs limit and per (the type's rate), a tenant rate, or both"}
	}
	if l.Rate != nil {
		if err := l.Rate.validate("rate."); err != nil {
			return err
		}
	}
	if t := l.Tenant; t != nil {
		if err := ValidTenantKey(t.Key); err != nil {
			return &LimitError{"tenant.key", err.Error()}
		}
		if err := t.Rate.validate("tenant."); err != nil {
			return err
		}
	}
	return nil
}

func (r Rate) validate(prefix string) error {
	switch {
	case r.Limit < 1 || r.Limit > MaxLimitCount:
		return &LimitError{prefix + "limit", fmt.Sprintf("%slimit must be 1 to %d jobs per period, got %d", prefix, MaxLimitCount, r.Limit)}
	case r.Per.Std() < MinLimitPer || r.Per.Std() > MaxLimitPer:
		return &LimitError{prefix + "per", fmt.Sprintf("%sper must be %s to %s, got %s", prefix, MinLimitPer, MaxLimitPer, r.Per.Std())}
	case r.Burst < 0 || r.Burst > MaxLimitBurst:
		return &LimitError{prefix + "burst", fmt.Sprintf("%sburst must be 0 to %d, got %d", prefix, MaxLimitBurst, r.Burst)}
	}
	return nil
}

// Interval is the even spacing of a rate's jobs: Per / Limit.
func (r Rate) Interval() time.Duration { return r.Per.Std() / time.Duration(max(r.Limit, 1)) }

// ValidTenantKey says what is wrong with a tenant key, if anything: a
// metadata key, 1 to MaxTenantKey bytes of UTF-8 text without control
// characters.
func ValidTenantKey(k string) error {
	return checkText("tenant.key", k, MaxTenantKey, `the metadata key that names a job's tenant, such as "customer"`)
}

// TenantOf returns the tenant of a job under l: the value of its metadata
// key, "" without it; ok is false when l has no tenant rate.
func (l Limit) TenantOf(j *Job) (tenant string, ok bool) {
	if l.Tenant == nil {
		return "", false
	}
	return j.Metadata[l.Tenant.Key], true
}
