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
// loads). Every instance writes itself there when it starts, so the newest
// instance (the new pod of a rolling upgrade) takes over. An instance that
// finds another instance's id there stops reconciling for good (passive) and,
// on exit, leaves every file alone. Only the owner cleans up, and it removes
// the owner file last. The file also carries the record of .conf files that
// were converted, so whichever instance cleans up can restore them.

// Owner is the content of the owner file.
type Owner struct {
	InstanceID  string       `json:"instanceID"`
	PodName     string       `json:"podName,omitempty"`
	PodUID      string       `json:"podUID,omitempty"`
	NodeName    string       `json:"nodeName,omitempty"`
	Since       time.Time    `json:"since"`
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

func (o Owner) encode() []byte {
	b, _ := json.MarshalIndent(o, "", "  ")
	return append(b, '\n')
}
