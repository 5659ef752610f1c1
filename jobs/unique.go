package jobs

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Unique makes a job the only one of its type and key for a while: a
// submission of the same type and key while the key is held creates
// nothing and is answered with the job that holds it (docs/unique.md).
type Unique struct {
	// Key names the work, such as "account-42"; with the job type it is
	// what two submissions must share to be duplicates.
	Key string `json:"key"`
	// For is the longest the key is held, counted from the job's
	// acceptance, whatever the job's state.
	For Duration `json:"for"`
	// While is how long, within For, the key is held.
	While UniqueWhile `json:"while"`
	// OnConflict says how a duplicate is answered; it concerns the
	// submission only and is not recorded.
	OnConflict OnConflict `json:"-"`
}

// UniqueWhile is how long a unique job holds its key, within its For: the
// statuses of the holder in which a submission of the same type and key is
// a duplicate. Each mode holds in every status the one before holds.
type UniqueWhile string

const (
	// UniqueQueued holds the key while the job waits for its first run:
	// scheduled or queued. Once an attempt starts, a new job may come.
	UniqueQueued UniqueWhile = "queued"
	// UniqueRunning holds it while the job waits or runs: scheduled,
	// queued or running. A job waiting between attempts (retrying) does
	// not hold it.
	UniqueRunning UniqueWhile = "running"
	// UniqueUntilDone holds it until the job ends: in every status but
	// succeeded, failed and canceled.
	UniqueUntilDone UniqueWhile = "until_done"
	// UniqueAlways holds it for the whole of For, even once the job has
	// ended (a throttle: one job per window), unless the job is canceled.
	UniqueAlways UniqueWhile = "always"
)

// UniqueWhiles are the modes there are, from the shortest hold.
var UniqueWhiles = []UniqueWhile{UniqueQueued, UniqueRunning, UniqueUntilDone, UniqueAlways}

// Valid reports whether w is a known mode.
func (w UniqueWhile) Valid() bool {
	switch w {
	case UniqueQueued, UniqueRunning, UniqueUntilDone, UniqueAlways:
		return true
	}
	return false
}

// Holds reports whether a holder with status s keeps its key under w, as
// the create script decides it (store.createLua, unique_held).
func (w UniqueWhile) Holds(s Status) bool {
	switch {
	case s == StatusCanceled || !s.Valid():
		return false
	case w == UniqueAlways:
		return true
	case s == StatusScheduled || s == StatusQueued:
		return true
	case s == StatusRunning:
		return w == UniqueRunning || w == UniqueUntilDone
	case s == StatusRetrying:
		return w == UniqueUntilDone
	}
	return false
}

// OnConflict is how a submission that finds its unique key held is
// answered.
type OnConflict string

const (
	// OnConflictExisting answers with the job that holds the key (the
	// default).
	OnConflictExisting OnConflict = "existing"
	// OnConflictError refuses the submission (HTTP 409 unique_conflict).
	OnConflictError OnConflict = "error"
)

// Valid reports whether c is a known answer ("" is not: it means the
// default where a request leaves it out).
func (c OnConflict) Valid() bool { return c == OnConflictExisting || c == OnConflictError }

// Limits on a unique key and its window.
const (
	// MaxUniqueKey bounds a unique key's length in bytes.
	MaxUniqueKey = 255
	// DefaultUniqueFor is the window of a unique job that names none.
	DefaultUniqueFor = 24 * time.Hour
	// MaxUniqueFor bounds the window: the key lives in Redis that long at
	// most, and a window of more than a month is a schedule's business.
	MaxUniqueFor = 30 * 24 * time.Hour
)

// ValidUniqueKey says what is wrong with a unique key, if anything: it must
// be 1 to MaxUniqueKey bytes of UTF-8 text without control characters (it
// is shown in terminals, logs and the dashboard).
func ValidUniqueKey(k string) error {
	return checkText("unique.key", k, MaxUniqueKey,
		fmt.Sprintf("1 to %d bytes of text naming the work, such as \"account-42\"", MaxUniqueKey))
}

// checkText says what is wrong with a short text a submitter names
// something by (a key), if anything: 1 to max bytes of UTF-8 text without
// control characters, since it shows in terminals, logs and the
// dashboard. field names it in the message, and want says what it is for
// when it is missing.
func checkText(field, v string, max int, want string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s is required: %s", field, want)
	case len(v) > max:
		return fmt.Errorf("%s must be at most %d bytes, got %d", field, max, len(v))
	case !utf8.ValidString(v):
		return fmt.Errorf("%s: not UTF-8 text", field)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s must not hold control characters (%U)", field, r)
		}
	}
	return nil
}
