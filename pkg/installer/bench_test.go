package installer

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// BenchmarkRepairLatency measures, per iteration, the time from the primary
// CNI atomically rewriting its conflist without our entry to our entry being
// back (seen through an independent fsnotify watch and libcni-style check).
// It reports the p50 and p90 in milliseconds; the goal is p50 < 100 ms.
func BenchmarkRepairLatency(b *testing.B) {
	n := newNode(b)
	calico := testdata(b, "calico/in/10-calico.conflist")
	n.write(b, "10-calico.conflist", calico)
	r := start(b, n.config(b, "--resync-interval=1h", "--log-level=error", "--drift-warn-count=1000000"))
	r.waitReady(b)

	w, err := fsnotify.NewWatcher()
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	must(b, w.Add(n.net))
	primary := filepath.Join(n.net, "10-calico.conflist")
	entry := r.cfg.Entry()
	restored := func() bool {
		data, err := os.ReadFile(primary)
		if err != nil {
			return false
		}
		d, err := CheckEntry(data, entry)
		return err == nil && d == DriftNone
	}
	tmp := filepath.Join(n.net, ".calico-tmp")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		must(b, os.WriteFile(tmp, []byte(calico), 0o644))
		t0 := time.Now()
		must(b, os.Rename(tmp, primary))
		deadline := time.After(5 * time.Second)
		for !restored() {
			select {
			case <-w.Events:
			case err := <-w.Errors:
				b.Fatal(err)
			case <-deadline:
				b.Fatalf("iteration %d: entry not restored within 5s", i)
			}
		}
		lat = append(lat, time.Since(t0))
		// Drain the events of the repair itself before the next rewrite.
	drain:
		for {
			select {
			case <-w.Events:
			case <-time.After(time.Millisecond):
				break drain
			}
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*9/10]), "p90-ms")
	b.ReportMetric(0, "ns/op")
}
