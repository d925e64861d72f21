package installer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Ownership: the node's installation belongs to the instance named in the
// owner file OwnerFileName in the net dir (its extension is not one a runtime
// loads). Every instance claims it when it starts, so the newest instance (the
// new pod of a rolling upgrade) takes over; when two claims race, the later
// start time wins. An instance that finds a newer instance's claim stops
// reconciling (passive) and, on exit, leaves every file alone. Only the owner
// cleans up, and it removes the owner file last. The owner touches the file's
// mtime every resync interval (a heartbeat); a passive instance becomes the
// owner again when the file is gone (the owner cleaned up and left) or its
// heartbeat is older than three intervals plus a second (the owner died or
// exited with --skip-cleanup). The file also records the .conf files that
// were converted, so whichever instance cleans up can restore them.

// Owner is the content of the owner file.
type Owner struct {
	InstanceID  string       `json:"instanceID"`
	PodName     string       `json:"podName,omitempty"`
	PodUID      string       `json:"podUID,omitempty"`
	NodeName    string       `json:"nodeName,omitempty"`
	Since       time.Time    `json:"since"`     // the instance's start: the later claim wins
	Heartbeat   Duration     `json:"heartbeat"` // how often the owner touches the file
	Conversions []Conversion `json:"conversions,omitempty"`
}

// ReadOwner returns the owner file of netDir, or nil when there is none.
func ReadOwner(netDir string) (*Owner, error) {
	data, err := os.ReadFile(filepath.Join(netDir, OwnerFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var o Owner
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("owner file %s: %w", filepath.Join(netDir, OwnerFileName), err)
	}
	return &o, nil
}

// Stale reports whether the owner stopped its heartbeat: the file's mtime
// is older than three heartbeats plus a second.
func (o Owner) Stale(mtime time.Time) bool {
	hb := time.Duration(o.Heartbeat)
	if hb <= 0 {
		hb = 15 * time.Second
	}
	return time.Since(mtime) > 3*hb+time.Second
}

// Duration is a time.Duration that reads and writes as "15s".
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

func (o Owner) encode() []byte {
	b, _ := json.MarshalIndent(o, "", "  ")
	return append(b, '\n')
}
