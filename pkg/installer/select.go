package installer

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// ConfExtensions are the network configuration extensions container
// runtimes load from the net dir (containerd's go-cni, CRI-O's ocicni).
var ConfExtensions = []string{".conf", ".conflist", ".json"}

// DirFile is one regular file of the net dir as the pure planning functions
// see it.
type DirFile struct {
	Name string // base name
	Data []byte
	// Real is the file's resolved path ("" when unknown, as in the pure
	// tests); Link says Name is a symlink to Real. Writes go to Real, so a
	// link some other tool manages stays a link, and two names of one file
	// are one file.
	Real string
	Link bool
}

// sameFile reports whether a and b are names of one file.
func sameFile(a, b DirFile) bool { return a.Real != "" && a.Real == b.Real }

// Skipped is a config file passed over while choosing the primary.
type Skipped struct {
	Name   string
	Reason string
}

// isConfName reports whether a runtime would consider name at all: exactly
// libcni.ConfFiles's test (filepath.Ext equal to one of the extensions).
func isConfName(name string) bool {
	ext := filepath.Ext(name)
	for _, e := range ConfExtensions {
		if ext == e {
			return true
		}
	}
	return false
}

func isConfList(name string) bool { return filepath.Ext(name) == ".conflist" }

// ValidateConfig applies the runtime's load test to one file: a .conflist
// must parse with libcni and carry at least one plugin; a .conf/.json must
// parse as a single plug-in configuration with a "type".
func ValidateConfig(name string, data []byte) error {
	if isConfList(name) {
		l, err := libcni.ConfListFromBytes(data)
		if err != nil {
			return err
		}
		if len(l.Plugins) == 0 {
			return errors.New("conflist has no plugins")
		}
		return nil
	}
	c, err := libcni.ConfFromBytes(data)
	if err != nil {
		return err
	}
	if c.Network.Type == "" {
		return errors.New("network type not found")
	}
	return nil
}

// SelectPrimary chooses the network configuration a container runtime uses:
// the files with a config extension sorted lexically (libcni.ConfFiles +
// sort.Strings), the first that loads; invalid files are skipped and
// reported. confName, when set, names the file to use instead; its .conf
// may have become the .conflist we converted it to.
func SelectPrimary(files []DirFile, confName string) (string, []Skipped) {
	byName := make(map[string][]byte, len(files))
	var names []string
	for _, f := range files {
		if !isConfName(f.Name) {
			continue
		}
		byName[f.Name] = f.Data
		names = append(names, f.Name)
	}
	sort.Strings(names)
	if confName != "" {
		candidates := []string{confName}
		if !isConfList(confName) {
			candidates = append(candidates, convertedName(confName))
		}
		var skipped []Skipped
		for _, c := range candidates {
			data, ok := byName[c]
			if !ok {
				continue
			}
			if err := ValidateConfig(c, data); err != nil {
				skipped = append(skipped, Skipped{Name: c, Reason: err.Error()})
				continue
			}
			return c, skipped
		}
		return "", skipped
	}
	var skipped []Skipped
	for _, n := range names {
		if err := ValidateConfig(n, byName[n]); err != nil {
			skipped = append(skipped, Skipped{Name: n, Reason: err.Error()})
			continue
		}
		return n, skipped
	}
	return "", skipped
}

// convertedName is the .conflist a .conf/.json primary is converted to.
func convertedName(name string) string {
	return strings.TrimSuffix(name, filepath.Ext(name)) + ".conflist"
}

func (s Skipped) String() string { return fmt.Sprintf("%s (%s)", s.Name, s.Reason) }
