// Package sandbox keeps one small record per pod sandbox on the host: what
// the plug-in's ADD saw and decided (the netns, the pod, the families),
// written atomically at ADD and removed at DEL. `mesh-cni inspect` finds a
// pod's netns through it; nothing in the plug-in reads it back.
package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Version is the record format this code writes and reads.
const Version = 1

// maxRecord bounds a record read back: anything longer is not ours.
const maxRecord = 64 << 10

// Record is one sandbox as ADD saw it.
type Record struct {
	Version     int    `json:"v"`
	ContainerID string `json:"containerID"`
	// Network is the conflist's name: GC of one network prunes its own.
	Network   string `json:"network,omitempty"`
	Netns     string `json:"netns"`
	IfName    string `json:"ifName,omitempty"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	// Families are the address families ADD programmed (4, 6).
	Families []int `json:"families"`
	// Decision and Reason are ADD's (agentapi's Decision values).
	Decision string    `json:"decision"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
}

// Entry is a record as read back: Err says why it could not be (a corrupt
// or foreign file is reported, never fatal).
type Entry struct {
	Path   string
	Record Record
	Err    error
}

// validID accepts what runtimes pass as CNI_CONTAINERID (letters, digits,
// "_.-", not leading with a punctuation mark, at most 255 bytes): a file
// name, never a path. A loop, not a regexp: this package is on the ADD
// path, and compiling the regexp cost every plug-in exec 2 ms of init.
func validID(id string) bool {
	if id == "" || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

func path(dir, containerID string) (string, error) {
	if !validID(containerID) {
		return "", fmt.Errorf("containerID %q cannot name a record file", containerID)
	}
	return filepath.Join(dir, containerID+".json"), nil
}

// Write stores r atomically: a reader sees the old record or the new one,
// never part of one.
func Write(dir string, r Record) error {
	p, err := path(dir, r.ContainerID)
	if err != nil {
		return err
	}
	r.Version = Version
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+r.ContainerID+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// Remove deletes the sandbox's record; a missing one is not an error.
func Remove(dir, containerID string) error {
	p, err := path(dir, containerID)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// List reads every record in dir; a missing dir is an empty list.
func List(dir string) ([]Entry, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		name := de.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		out = append(out, read(filepath.Join(dir, name)))
	}
	return out, nil
}

func read(p string) Entry {
	e := Entry{Path: p}
	f, err := os.Open(p)
	if err != nil {
		e.Err = err
		return e
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		e.Err = err
		return e
	}
	if !st.Mode().IsRegular() || st.Size() > maxRecord {
		e.Err = fmt.Errorf("%s: not a record (a %s of %d bytes)", p, st.Mode().Type(), st.Size())
		return e
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		e.Err = err
		return e
	}
	if err := json.Unmarshal(b, &e.Record); err != nil {
		e.Err = fmt.Errorf("%s: corrupt record: %w", p, err)
		return e
	}
	switch r := e.Record; {
	case r.Version != Version:
		e.Err = fmt.Errorf("%s: record version %d, this mesh-cni reads %d", p, r.Version, Version)
	case r.Namespace == "" || r.Name == "" || r.Netns == "":
		e.Err = fmt.Errorf("%s: record without namespace, name or netns", p)
	case filepath.Base(p) != r.ContainerID+".json":
		e.Err = fmt.Errorf("%s: record names another sandbox (%s)", p, r.ContainerID)
	}
	return e
}

// Find is the newest valid record of the pod; ok is false when there is
// none. Records that could not be read are returned as bad.
func Find(entries []Entry, namespace, name string) (rec Record, ok bool) {
	for _, e := range entries {
		if e.Err != nil || e.Record.Namespace != namespace || e.Record.Name != name {
			continue
		}
		if !ok || e.Record.Time.After(rec.Time) {
			rec, ok = e.Record, true
		}
	}
	return rec, ok
}
