package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/podcache"
)

const (
	readDeadline  = time.Second // a plug-in writes its request at once
	writeDeadline = time.Second
	maxConns      = 256 // more at once: refused, the plug-ins fall back to the API
)

// podCache is what the server needs of the cache.
type podCache interface {
	Synced() bool
	Lookup(ctx context.Context, namespace, name, uid string, wait time.Duration) (*podcache.Entry, bool)
}

// server answers plug-ins on the socket, one request per connection.
type server struct {
	cfg     *Config
	cache   podCache
	reports chan<- *agentapi.Report
	m       *metrics
	log     *slog.Logger
	sem     chan struct{}
	wg      sync.WaitGroup
}

func (s *server) serve(ctx context.Context, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("agent socket accept failed", "error", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.m.socketErrors.WithLabelValues("busy").Inc()
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer func() { <-s.sem; s.wg.Done() }()
			defer c.Close()
			s.handle(ctx, c.(*net.UnixConn))
		}()
	}
}

func (s *server) handle(ctx context.Context, c *net.UnixConn) {
	cred, err := agentapi.PeerCred(c)
	if err == nil {
		err = agentapi.CheckPeer(cred, s.cfg.PeerUID)
	}
	if err != nil {
		s.m.socketErrors.WithLabelValues("peer").Inc()
		s.log.Warn("agent socket: peer refused", "error", err)
		return // not a word to it
	}
	_ = c.SetReadDeadline(time.Now().Add(readDeadline))
	var req agentapi.Request
	if err := agentapi.ReadMessage(c, &req); err != nil {
		s.readError(err, cred)
		s.answer(c, &agentapi.Response{Status: agentapi.StatusError, Error: err.Error()})
		return
	}
	if err := req.Validate(); err != nil {
		s.m.socketErrors.WithLabelValues("invalid").Inc()
		s.log.Warn("agent socket: invalid request", "pid", cred.PID, "error", err)
		s.answer(c, &agentapi.Response{Status: agentapi.StatusError, Error: err.Error()})
		return
	}
	switch req.Kind {
	case agentapi.KindPod:
		s.answer(c, s.pod(ctx, req.Pod))
	case agentapi.KindReport:
		select {
		case s.reports <- req.Report:
		default: // the writer is behind: dropping a report never holds a plug-in
			s.m.socketErrors.WithLabelValues("busy").Inc()
		}
	}
}

func (s *server) readError(err error, cred agentapi.Cred) {
	kind := "read"
	switch {
	case errors.Is(err, agentapi.ErrTooLarge):
		kind = "oversized"
	case errors.Is(err, io.EOF), errors.Is(err, os.ErrDeadlineExceeded):
		kind = "read"
	default:
		kind = "invalid"
	}
	s.m.socketErrors.WithLabelValues(kind).Inc()
	s.log.Warn("agent socket: unreadable request", "pid", cred.PID, "kind", kind, "error", err)
}

func (s *server) answer(c *net.UnixConn, r *agentapi.Response) {
	r.Version = agentapi.Version
	_ = c.SetWriteDeadline(time.Now().Add(writeDeadline))
	if err := agentapi.WriteMessage(c, r); err != nil {
		s.m.socketErrors.WithLabelValues("write").Inc()
	}
}

// pod answers from the cache, waiting for the watch up to the smaller of
// --pod-wait and what the plug-in asked for.
func (s *server) pod(ctx context.Context, req *agentapi.PodRequest) *agentapi.Response {
	r := s.podAnswer(ctx, req)
	s.m.podRequests.WithLabelValues(r.Status).Inc()
	return r
}

func (s *server) podAnswer(ctx context.Context, req *agentapi.PodRequest) *agentapi.Response {
	if !s.cache.Synced() {
		return &agentapi.Response{Status: agentapi.StatusNotReady, Error: "the pod cache has not synced yet"}
	}
	wait := s.cfg.PodWait
	if asked := time.Duration(req.WaitMillis) * time.Millisecond; asked < wait {
		wait = asked
	}
	e, ok := s.cache.Lookup(ctx, req.Namespace, req.Name, req.UID, wait)
	if !ok {
		what := "pod " + req.Namespace + "/" + req.Name
		if req.UID != "" {
			what += " with uid " + req.UID
		}
		return &agentapi.Response{Status: agentapi.StatusMiss, Error: what + " is not in the cache after " + wait.String()}
	}
	p := e.Pod
	return &agentapi.Response{Status: agentapi.StatusOK, UID: string(e.UID), Pod: &p}
}
