package jobs

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
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

// NewProcessID returns a name for this process, such as
// "vm-18478-9f3a2c11": the host, the process id and four random bytes. The
// random part keeps it unique where the first two repeat: a container
// restarted in place has the same host name and is PID 1 again, and a
// worker that took its predecessor's id would also take over its lease,
// making the jobs that predecessor lost look alive for ever.
func NewProcessID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return fmt.Sprintf("%s-%d-%s", cmp.Or(host, "warren"), os.Getpid(), hex.EncodeToString(b))
}
