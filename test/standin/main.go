// Command standin is the test stand-in for the mesh's sidecar and apps.
//
//	standin proxy --ports 15001,15006   as UID 1337: report each connection's
//	       [--udp 15053]                 original destination (SO_ORIGINAL_DST);
//	       [--tproxy 15006]              UDP listeners answer each datagram;
//	                                     transparent listeners report TPROXY's
//	standin app --listen :9080           a plain app that names itself
//	       [--udp :53]                   (and answers datagrams, a resolver)
//	standin validate [--want captured|none]
//	                                     istio-validation: prove (or disprove)
//	                                     the redirect before the app starts
//	standin dial [--timeout 3s] [--udp] ip:port
//	                                     connect (or send a datagram), print
//	                                     the peer's line
//
// It is static and dependency-free so it can be packed into an image as is.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "proxy":
		err = proxy(os.Args[2:])
	case "app":
		err = app(os.Args[2:])
	case "dial":
		err = dial(os.Args[2:])
	case "validate":
		err = validate(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: standin proxy --ports P,P [--udp P] | app --listen ADDR [--udp ADDR] | validate [--want captured|none] | dial [--timeout D] [--udp] HOST:PORT")
	os.Exit(2)
}

func proxy(args []string) error {
	// Istio's injector writes "proxy sidecar ..." (or "proxy router"): the
	// kind is positional; the stand-in's own flags follow it.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		args = args[1:]
	}
	fs := flag.NewFlagSet("proxy", flag.ExitOnError)
	ports := fs.String("ports", "15001,15006", "ports to listen on")
	udp := fs.String("udp", "", "UDP ports to answer on")
	tproxy := fs.String("tproxy", "", "transparent (TPROXY) ports to listen on; needs CAP_NET_ADMIN")
	_ = fs.Parse(args)
	lns, err := serveTransparent(splitList(*tproxy))
	if err != nil {
		return err
	}
	// Like Istio's agent, the UDP listeners bind the loopback addresses: a
	// reply must leave from the address REDIRECT sent the query to
	// (127.0.0.1 or ::1) for conntrack to map it back to the resolver's.
	for _, p := range splitList(*udp) {
		for _, host := range []string{"127.0.0.1", "::1"} {
			pc, err := net.ListenPacket("udp", net.JoinHostPort(host, p))
			if err != nil {
				return err
			}
			lns = append(lns, pc)
			go answer(pc, func(peer net.Addr) string { return fmt.Sprintf("port=%s udp peer=%s\n", p, peer) })
		}
	}
	for _, p := range splitList(*ports) {
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		go serve(ln, func(c net.Conn) string {
			orig, err := originalDst(c.(*net.TCPConn))
			if err != nil {
				orig = "none(" + err.Error() + ")"
			}
			return fmt.Sprintf("port=%s orig=%s peer=%s\n", p, orig, c.RemoteAddr())
		})
	}
	fmt.Printf("standin proxy uid=%d gid=%d listening on %s\n", os.Getuid(), os.Getgid(), *ports)
	return waitSignal(lns)
}

func app(args []string) error {
	fs := flag.NewFlagSet("app", flag.ExitOnError)
	listen := fs.String("listen", ":9080", "address to listen on")
	udp := fs.String("udp", "", "UDP address to answer on")
	termCode := fs.Int("term-exit-code", 0, "exit code after SIGTERM (a batch job killed mid-work fails; test/e2e/repair.sh's Job)")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	closers := []io.Closer{ln}
	host, _ := os.Hostname()
	go serve(ln, func(c net.Conn) string { return fmt.Sprintf("app %s local=%s\n", host, c.LocalAddr()) })
	if *udp != "" {
		pc, err := net.ListenPacket("udp", *udp)
		if err != nil {
			return err
		}
		closers = append(closers, pc)
		go answer(pc, func(net.Addr) string { return fmt.Sprintf("app %s udp local=%s\n", host, pc.LocalAddr()) })
	}
	fmt.Printf("standin app listening on %s\n", *listen)
	err = waitSignal(closers)
	if *termCode != 0 {
		os.Exit(*termCode)
	}
	return err
}

// answer replies to every datagram with one line.
func answer(pc net.PacketConn, reply func(peer net.Addr) string) {
	buf := make([]byte, 1500)
	for {
		_, peer, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo([]byte(reply(peer)), peer)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func serve(ln net.Listener, reply func(net.Conn) string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte(reply(c)))
		}()
	}
}

func waitSignal(lns []io.Closer) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	return nil
}

func dial(args []string) error {
	fs := flag.NewFlagSet("dial", flag.ExitOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "connect and read timeout")
	udp := fs.Bool("udp", false, "send one datagram instead of connecting")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	network := "tcp"
	if *udp {
		network = "udp"
	}
	c, err := net.DialTimeout(network, fs.Arg(0), *timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(*timeout))
	if *udp {
		if _, err := c.Write([]byte("query\n")); err != nil {
			return err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading from %s: %w", fs.Arg(0), err)
	}
	fmt.Print(line)
	return nil
}
