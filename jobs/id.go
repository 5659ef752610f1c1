package jobs

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// NewID returns a new job id: a UUIDv7, whose leading bits are the creation
// time in milliseconds, so ids sort by age and index well.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system's random source does; nothing can
		// run safely then.
		panic(fmt.Sprintf("jobs: new id: %v", err))
	}
	return id.String()
}

// ValidID reports whether s has the form of a job id (a canonical UUID in
// lower case, as ids are made and stored), so malformed ids can be refused
// before they reach the store.
func ValidID(s string) bool {
	if len(s) != 36 || strings.ToLower(s) != s {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}
