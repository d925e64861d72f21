package installer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// PluginType is the "type" of our entry and the file name of the plug-in
// binary in the CNI bin dir.
const PluginType = "mesh-cni"

// Drift says why a conflist does not hold the desired mesh-cni entry.
type Drift string

// The reasons a conflist can differ from the desired state. They are also
// the "reason" label of the repairs metric.
const (
	DriftNone      Drift = ""
	DriftMissing   Drift = "missing"   // no mesh-cni entry
	DriftNotLast   Drift = "not_last"  // our entry is followed by another plug-in
	DriftDiffers   Drift = "differs"   // an entry is there but not the desired one (stale settings)
	DriftDuplicate Drift = "duplicate" // more than one mesh-cni entry
	DriftConvert   Drift = "conf_file" // the primary is a single-plugin .conf/.json that must become a .conflist
	DriftMoved     Drift = "moved"     // our entry sits in a file that is no longer the primary
)

// ConfToConfList turns a single-plugin network configuration (.conf/.json)
// into a configuration list the way libcni's ConfListFromConf does: the list
// gets the network's name and the ORIGINAL cniVersion, and the plug-in object
// is kept verbatim (all its keys, in their order) as the first plugin.
func ConfToConfList(conf []byte) ([]byte, error) {
	obj, err := decodeObject(conf)
	if err != nil {
		return nil, err
	}
	if t, _ := obj.getString("type"); t == "" {
		return nil, errors.New("network configuration has no \"type\"")
	}
	if _, ok := obj.get("plugins"); ok {
		return nil, errors.New("network configuration has a \"plugins\" list; it is a conflist, not a .conf")
	}
	list := object{}
	if v, ok := obj.get("cniVersion"); ok {
		list = append(list, member{Key: "cniVersion", Value: v})
	}
	name, ok := obj.get("name")
	if !ok {
		name = json.RawMessage(`""`) // libcni uses the (empty) network name
	}
	list = append(list, member{Key: "name", Value: name})
	var plugin bytes.Buffer
	if err := obj.appendCompact(&plugin); err != nil {
		return nil, err
	}
	list = append(list, member{Key: "plugins", Value: json.RawMessage("[" + plugin.String() + "]")})
	return encodeObject(list)
}

// InsertEntry returns conflist with every mesh-cni entry removed and entry
// appended as the last plugin. Every other key of the list and of the other
// plugins is preserved with its order and exact value.
func InsertEntry(conflist, entry []byte) ([]byte, error) {
	var compactEntry bytes.Buffer
	if err := json.Compact(&compactEntry, entry); err != nil {
		return nil, fmt.Errorf("mesh-cni entry: %w", err)
	}
	obj, plugins, err := splitConfList(conflist)
	if err != nil {
		return nil, err
	}
	kept := withoutEntries(plugins)
	kept = append(kept, json.RawMessage(compactEntry.Bytes()))
	return encodeObject(obj.set("plugins", joinArray(kept)))
}

// RemoveEntries returns conflist without any mesh-cni entry and how many it
// removed. With nothing to remove it returns the input unchanged.
func RemoveEntries(conflist []byte) ([]byte, int, error) {
	obj, plugins, err := splitConfList(conflist)
	if err != nil {
		return nil, 0, err
	}
	kept := withoutEntries(plugins)
	removed := len(plugins) - len(kept)
	if removed == 0 {
		return conflist, 0, nil
	}
	out, err := encodeObject(obj.set("plugins", joinArray(kept)))
	return out, removed, err
}

// CheckEntry tells whether conflist holds exactly one mesh-cni entry, equal
// to entry (up to whitespace) and last in the list.
func CheckEntry(conflist, entry []byte) (Drift, error) {
	_, plugins, err := splitConfList(conflist)
	if err != nil {
		return DriftNone, err
	}
	n, lastIdx := 0, -1
	for i, p := range plugins {
		if isMeshEntry(p) {
			n++
			lastIdx = i
		}
	}
	switch {
	case n == 0:
		return DriftMissing, nil
	case n > 1:
		return DriftDuplicate, nil
	case lastIdx != len(plugins)-1:
		return DriftNotLast, nil
	case !compactEqual(plugins[lastIdx], entry):
		return DriftDiffers, nil
	}
	return DriftNone, nil
}

// countEntries returns how many mesh-cni entries conflist holds and how many
// plugins it has in all; errors mean the bytes are not a conflist.
func countEntries(conflist []byte) (entries, plugins int, err error) {
	_, ps, err := splitConfList(conflist)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range ps {
		if isMeshEntry(p) {
			entries++
		}
	}
	return entries, len(ps), nil
}

func splitConfList(conflist []byte) (object, []json.RawMessage, error) {
	obj, err := decodeObject(conflist)
	if err != nil {
		return nil, nil, err
	}
	raw, ok := obj.get("plugins")
	if !ok {
		return nil, nil, errors.New("conflist has no \"plugins\" list")
	}
	plugins, err := decodeArray(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("conflist \"plugins\": %w", err)
	}
	return obj, plugins, nil
}

func isMeshEntry(plugin json.RawMessage) bool { return runtimeType(plugin) == PluginType }

// runtimeType is the plug-in type a runtime sees. libcni decodes each
// plug-in of a list into a map and then into a struct, so "TYPE" or "Type"
// count as "type" too (encoding/json matches case-insensitively, the exact
// key winning); an entry of ours written that way is still ours to replace.
func runtimeType(plugin json.RawMessage) string {
	var m map[string]any
	if json.Unmarshal(plugin, &m) != nil {
		return ""
	}
	b, err := json.Marshal(m)
	if err != nil {
		return ""
	}
	var v struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(b, &v) != nil {
		return ""
	}
	return v.Type
}

func withoutEntries(plugins []json.RawMessage) []json.RawMessage {
	kept := make([]json.RawMessage, 0, len(plugins)+1)
	for _, p := range plugins {
		if !isMeshEntry(p) {
			kept = append(kept, p)
		}
	}
	return kept
}

func joinArray(elems []json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
	}
	b.WriteByte(']')
	return b.Bytes()
}

func encodeObject(obj object) ([]byte, error) {
	var b bytes.Buffer
	if err := obj.appendCompact(&b); err != nil {
		return nil, err
	}
	return pretty(b.Bytes())
}
