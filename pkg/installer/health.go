package installer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// listen opens the health and metrics listeners (one when the addresses are
// equal).
func (in *Installer) listen() error {
	if in.cfg.HealthAddr != "" {
		ln, err := net.Listen("tcp", in.cfg.HealthAddr)
		if err != nil {
			return fmt.Errorf("--health-addr %s: %w", in.cfg.HealthAddr, err)
		}
		in.healthLn = ln
	}
	if in.cfg.MetricsAddr != "" && in.cfg.MetricsAddr != in.cfg.HealthAddr {
		ln, err := net.Listen("tcp", in.cfg.MetricsAddr)
		if err != nil {
			if in.healthLn != nil {
				in.healthLn.Close()
			}
			return fmt.Errorf("--metrics-addr %s: %w", in.cfg.MetricsAddr, err)
		}
		in.metricsLn = ln
	}
	return nil
}

func (in *Installer) healthMux(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		// Alive while the loop turns: it passes the select at least once per
		// resync interval.
		last := time.Unix(0, in.heartbeat.Load())
		if in.heartbeat.Load() != 0 && time.Since(last) > 3*in.cfg.ResyncInterval+10*time.Second {
			http.Error(w, "reconcile loop stuck since "+last.Format(time.RFC3339), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		why, _ := in.notReady.Load().(string)
		if in.ready.Load() {
			var err error
			if in.cfg.ReadyCheck != nil {
				err = in.cfg.ReadyCheck()
			}
			if err == nil {
				fmt.Fprintln(w, "ready")
				return
			}
			why = err.Error()
		}
		http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
	})
}

func (in *Installer) serve() {
	metrics := promhttp.HandlerFor(in.reg, promhttp.HandlerOpts{Registry: in.reg})
	start := func(ln net.Listener, mux *http.ServeMux) {
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		in.servers = append(in.servers, srv)
		in.serveWG.Add(1)
		go func() {
			defer in.serveWG.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				in.log.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	if in.healthLn != nil {
		mux := http.NewServeMux()
		in.healthMux(mux)
		if in.cfg.MetricsAddr == in.cfg.HealthAddr {
			mux.Handle("/metrics", metrics)
		}
		start(in.healthLn, mux)
	}
	if in.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics)
		start(in.metricsLn, mux)
	}
}

func (in *Installer) stopServing() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range in.servers {
		_ = s.Shutdown(ctx)
	}
	// Listeners never handed to a server (Run not reached) are closed too.
	for _, ln := range []net.Listener{in.healthLn, in.metricsLn} {
		if ln != nil {
			ln.Close()
		}
	}
	in.serveWG.Wait()
}
