// streamclient drives nspod's CRI streaming server with the Go client code crictl v1.34.0
// uses (cri-tools pkg/common/streaming.go): remotecommand's SPDY and WebSocket executors,
// the fallback executor kubectl uses, and client-go's port forwarder over SPDY or the
// SPDY-over-WebSocket tunnel.
//
//	streamclient exec -transport spdy|websocket|fallback [-tty] [-stdin] [-resize WxH,...] URL
//	streamclient portforward -transport spdy|websocket -port N -send TEXT URL
//
// exec: the remote command's stdout/stderr on ours; our exit code is the remote one, or 1
// (with the error on stderr) when the stream failed. portforward: connects to the local end
// of the forward, writes TEXT, half-closes, prints what comes back.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
)

type sizes struct{ queue []remotecommand.TerminalSize }

func (s *sizes) Next() *remotecommand.TerminalSize {
	if len(s.queue) == 0 {
		time.Sleep(time.Hour) // no more: the executor stops asking when the stream ends
		return nil
	}
	next := s.queue[0]
	s.queue = s.queue[1:]
	return &next
}

func executor(transport, raw string) (remotecommand.Executor, error) {
	config := &rest.Config{TLSClientConfig: rest.TLSClientConfig{}}
	parsed, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch transport {
	case "spdy":
		return remotecommand.NewSPDYExecutor(config, "POST", parsed)
	case "websocket":
		return remotecommand.NewWebSocketExecutor(config, "GET", parsed.String())
	case "fallback":
		ws, err := remotecommand.NewWebSocketExecutor(config, "GET", parsed.String())
		if err != nil {
			return nil, err
		}
		sp, err := remotecommand.NewSPDYExecutor(config, "POST", parsed)
		if err != nil {
			return nil, err
		}
		return remotecommand.NewFallbackExecutor(ws, sp, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
	return nil, fmt.Errorf("unknown transport %q", transport)
}

func runExec(args []string) int {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	transport := fs.String("transport", "spdy", "spdy, websocket or fallback")
	tty := fs.Bool("tty", false, "a terminal")
	stdin := fs.Bool("stdin", false, "send our stdin")
	resize := fs.String("resize", "", "terminal sizes to send, WxH,WxH")
	fs.Parse(args)
	ex, err := executor(*transport, fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "executor:", err)
		return 1
	}
	opts := remotecommand.StreamOptions{Stdout: os.Stdout, Stderr: os.Stderr, Tty: *tty}
	if *stdin {
		opts.Stdin = os.Stdin
	}
	if *resize != "" {
		q := &sizes{}
		for _, wh := range strings.Split(*resize, ",") {
			var w, h uint16
			fmt.Sscanf(wh, "%dx%d", &w, &h)
			q.queue = append(q.queue, remotecommand.TerminalSize{Width: w, Height: h})
		}
		opts.TerminalSizeQueue = q
	}
	err = ex.StreamWithContext(context.Background(), opts)
	if err == nil {
		return 0
	}
	if code, ok := err.(exec.CodeExitError); ok {
		return code.Code
	}
	fmt.Fprintln(os.Stderr, "stream:", err)
	return 1
}

func dialer(transport, raw string) (httpstream.Dialer, error) {
	config := &rest.Config{TLSClientConfig: rest.TLSClientConfig{}}
	parsed, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch transport {
	case "spdy":
		tr, upgrader, err := spdy.RoundTripperFor(config)
		if err != nil {
			return nil, err
		}
		return spdy.NewDialer(upgrader, &http.Client{Transport: tr}, "POST", parsed), nil
	case "websocket":
		return portforward.NewSPDYOverWebsocketDialer(parsed, config)
	}
	return nil, fmt.Errorf("unknown transport %q", transport)
}

func runPortForward(args []string) int {
	fs := flag.NewFlagSet("portforward", flag.ExitOnError)
	transport := fs.String("transport", "spdy", "spdy or websocket")
	port := fs.Int("port", 0, "the pod's port")
	send := fs.String("send", "", "what to send")
	count := fs.Int("count", 1, "connections to make, one after the other")
	fs.Parse(args)
	d, err := dialer(*transport, fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dialer:", err)
		return 1
	}
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.New(d, []string{"0:" + strconv.Itoa(*port)}, stop, ready, io.Discard, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "portforward:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		fmt.Fprintln(os.Stderr, "forward:", err)
		return 1
	}
	ports, err := pf.GetPorts()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ports:", err)
		return 1
	}
	status := 0
	for i := 0; i < *count; i++ {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0].Local))
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			return 1
		}
		conn.Write([]byte(*send))
		conn.(*net.TCPConn).CloseWrite()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		reply, err := io.ReadAll(conn)
		conn.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			status = 1
		}
		os.Stdout.Write(reply)
	}
	close(stop)
	<-done
	return status
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: streamclient exec|portforward ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "exec":
		os.Exit(runExec(os.Args[2:]))
	case "portforward":
		os.Exit(runPortForward(os.Args[2:]))
	}
	fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
	os.Exit(2)
}
