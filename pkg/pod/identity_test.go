package pod

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
)

const seedUID = "5b4f4c1e-3d2a-4f7b-9a0e-2c1d8e7f6a5b"

var seedRef = Ref{Namespace: "default", Name: "productpage-v1-6b746f74dc-9stvs", UID: seedUID}

func seedBody(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/productpage.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRealPod(t *testing.T) {
	p, err := Decode(seedBody(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckIdentity(p, seedRef); err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.Containers) != 2 || *p.Spec.Containers[1].SecurityContext.RunAsUser != 1337 ||
		p.Metadata.Annotations["traffic.sidecar.istio.io/excludeOutboundIPRanges"] != "192.168.0.1/32" {
		t.Fatalf("%+v", p)
	}
	if err := CheckIdentity(p, Ref{Namespace: "default", Name: seedRef.Name}); err != nil {
		t.Fatalf("no UID asked: %v", err)
	}
}

func TestNotThePod(t *testing.T) {
	for name, body := range map[string]string{
		"empty":        `{}`,
		"null":         `null`,
		"status":       `{"kind":"Status","apiVersion":"v1","status":"Success"}`,
		"other-pod":    `{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"default","name":"other","uid":"` + seedUID + `"}}`,
		"other-ns":     `{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"prod","name":"productpage-v1-6b746f74dc-9stvs","uid":"` + seedUID + `"}}`,
		"other-uid":    `{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"default","name":"productpage-v1-6b746f74dc-9stvs","uid":"x"}}`,
		"no-uid":       `{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"default","name":"productpage-v1-6b746f74dc-9stvs"}}`,
		"wrong-kind":   `{"kind":"PodTemplate","apiVersion":"v1","metadata":{"namespace":"default","name":"productpage-v1-6b746f74dc-9stvs","uid":"` + seedUID + `"}}`,
		"upper-case":   `{"KIND":"Pod","APIVERSION":"v1","METADATA":{"NAMESPACE":"default","NAME":"productpage-v1-6b746f74dc-9stvs","UID":"` + seedUID + `"}}`,
		"list-of-pods": `{"kind":"PodList","apiVersion":"v1","items":[]}`,
		"apps-v1":      `{"kind":"Pod","apiVersion":"apps/v1","metadata":{"namespace":"default","name":"productpage-v1-6b746f74dc-9stvs","uid":"` + seedUID + `"}}`,
	} {
		p, err := Decode([]byte(body))
		if err == nil {
			err = CheckIdentity(p, seedRef)
		}
		if !errors.Is(err, ErrNotThePod) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Decode([]byte(`{"kind":`)); err == nil {
		t.Error("truncated JSON decoded")
	}
}

// FuzzDecode: decoding any body never panics, and a body is accepted only
// when it is exactly the requested pod, as a plain case-exact reading of
// the JSON sees it.
func FuzzDecode(f *testing.F) {
	f.Add(seedBody(f), seedRef.Namespace, seedRef.Name, seedRef.UID)
	f.Add(seedBody(f), seedRef.Namespace, seedRef.Name, "")
	f.Add([]byte(`{}`), "default", "p", "")
	f.Add([]byte(`null`), "", "", "")
	f.Add([]byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"default","name":"p","uid":"u"}}`), "default", "p", "u")
	f.Add([]byte(`{"Kind":"Pod","apiVersion":"v1","metadata":{"namespace":"default","name":"p"}}`), "default", "p", "")
	f.Add([]byte(`{"kind":"Pod","kind":"Secret","apiVersion":"v1","metadata":{"namespace":"default","name":"p"}}`), "default", "p", "")
	f.Fuzz(func(t *testing.T, body []byte, namespace, name, uid string) {
		want := Ref{Namespace: namespace, Name: name, UID: uid}
		p, err := Decode(body)
		if err != nil {
			return
		}
		if CheckIdentity(p, want) != nil {
			return
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted a body a plain reading refuses: %v", err)
		}
		meta, _ := m["metadata"].(map[string]any)
		if str(m, "kind") != "Pod" || str(m, "apiVersion") != "v1" || str(meta, "namespace") != namespace ||
			str(meta, "name") != name || (uid != "" && str(meta, "uid") != uid) {
			t.Fatalf("accepted %q as pod %s (uid %q)", body, want, uid)
		}
	})
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
