package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// defaultEntry is a mesh-cni entry with nothing configured.
const defaultEntry = `{"cniVersion":"1.0.0","name":"mesh-cni","type":"mesh-cni"}`

// Load reads the config the operators' tools use: a conflist's mesh-cni
// entry, or a bare entry, through Parse (the plug-in's own parser); ""
// is the defaults.
func Load(path string) (*Config, error) {
	if path == "" {
		return Parse([]byte(defaultEntry))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	entry, err := MeshEntry(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := Parse(entry)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// MeshEntry picks the mesh-cni entry of a conflist, giving it the list's
// cniVersion and name as libcni does; a bare entry is returned as is.
func MeshEntry(b []byte) ([]byte, error) {
	var list struct {
		CNIVersion string                       `json:"cniVersion"`
		Name       string                       `json:"name"`
		Plugins    []map[string]json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if list.Plugins == nil {
		return b, nil
	}
	for _, p := range list.Plugins {
		var typ string
		if json.Unmarshal(p["type"], &typ) == nil && typ == "mesh-cni" {
			p["cniVersion"], _ = json.Marshal(list.CNIVersion)
			p["name"], _ = json.Marshal(list.Name)
			return json.Marshal(p)
		}
	}
	return nil, errors.New("plugins: no entry of type mesh-cni")
}
