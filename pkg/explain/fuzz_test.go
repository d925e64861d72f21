package explain

import (
	"os"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/config"
)

// FuzzExplain: whatever the manifest holds, explain never panics, every
// report either explains a pod, skips a document or names why it refused
// it, and only redirected pods carry rules.
func FuzzExplain(f *testing.F) {
	for _, name := range []string{"seed-pod", "skip-reasons", "deployment", "multi", "bad-annotation", "ipv6", "tproxy"} {
		b, err := os.ReadFile("testdata/" + name + ".yaml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"List","items":[{"kind":"Pod","spec":{"containers":null}}]}`))
	f.Add([]byte("---\n---\nkind: CronJob\nspec: {jobTemplate: 3}\n"))
	cfg, err := config.Load("")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		for _, r := range All(input, "default", cfg) {
			if r.Reason == "" {
				t.Fatalf("a report without a reason: %+v", r)
			}
			if (r.Rules != nil) != r.Redirect {
				t.Fatalf("rules and redirect disagree: %+v", r)
			}
			if r.Redirect && (r.Error != "" || r.Skipped != "") {
				t.Fatalf("redirected yet refused or skipped: %+v", r)
			}
		}
	})
}
