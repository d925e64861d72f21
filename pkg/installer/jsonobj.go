package installer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// member is one key of a JSON object with its value kept as the original
// bytes, so numbers, escapes and nested content survive untouched.
type member struct {
	Key   string
	Value json.RawMessage
	// rawKey is the key as written in the input (escapes and even invalid
	// UTF-8 kept), "" for keys we add; it is what we write back.
	rawKey []byte
}

// object is a JSON object whose keys keep their order (and duplicates, if the
// author wrote any). encoding/json's maps would reorder keys and turn numbers
// into float64; neither is acceptable when rewriting someone else's config.
type object []member

// decodeObject parses data as exactly one JSON object.
func decodeObject(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("invalid JSON: not an object")
	}
	obj := object{}
	for dec.More() {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("invalid JSON: object key is not a string")
		}
		rawKey := bytes.TrimLeft(data[start:dec.InputOffset()], " \t\r\n,")
		if len(rawKey) < 2 || rawKey[0] != '"' || rawKey[len(rawKey)-1] != '"' {
			rawKey = nil // not where expected: write the decoded key
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("invalid JSON value for %q: %w", key, err)
		}
		obj = append(obj, member{Key: key, Value: raw, rawKey: rawKey})
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: trailing data after the object")
	}
	return obj, nil
}

// get returns the value of key; like encoding/json, the last duplicate wins.
func (o object) get(key string) (json.RawMessage, bool) {
	for i := len(o) - 1; i >= 0; i-- {
		if o[i].Key == key {
			return o[i].Value, true
		}
	}
	return nil, false
}

// set replaces the value of key in place (the last duplicate), or appends it.
func (o object) set(key string, v json.RawMessage) object {
	for i := len(o) - 1; i >= 0; i-- {
		if o[i].Key == key {
			o[i].Value = v
			return o
		}
	}
	return append(o, member{Key: key, Value: v})
}

// getString returns the string value of key; ok is false when the key is
// missing or not a string.
func (o object) getString(key string) (string, bool) {
	raw, ok := o.get(key)
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// appendCompact writes the object without insignificant whitespace.
func (o object) appendCompact(buf *bytes.Buffer) error {
	buf.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		if m.rawKey != nil {
			buf.Write(m.rawKey)
		} else {
			buf.Write(marshalString(m.Key))
		}
		buf.WriteByte(':')
		if err := json.Compact(buf, m.Value); err != nil {
			return fmt.Errorf("value of %q: %w", m.Key, err)
		}
	}
	buf.WriteByte('}')
	return nil
}

// marshalString encodes s as a JSON string without HTML escaping.
func marshalString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimRight(b.Bytes(), "\n")
}

// decodeArray parses data as a JSON array, keeping each element's bytes.
func decodeArray(data []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, errors.New("not an array")
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(trimmed, &arr); err != nil {
		return nil, err
	}
	return arr, nil
}

// pretty indents compact JSON with two spaces and a trailing newline, the
// layout every CNI installer and `jq` produce.
func pretty(compact []byte) ([]byte, error) {
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// compactEqual reports whether two JSON texts are equal up to whitespace.
func compactEqual(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}
