package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
)

const demoDesc = `
Start two overlayd nodes in this process, rootless (netstack attachments,
VXLAN over UDP on 127.0.0.1), serve HTTP on one and fetch from the other
across the overlay, then print what happened. Exits 0 when the response
arrived byte-exact.`

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	setUsage(fs, "demo [flags]", demoDesc)
	size := fs.Int("size", 4<<20, "`bytes` in the HTTP response body")
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *size < 0 || *size > 1<<30 {
		return usagef("--size %d is out of range (0-1073741824)", *size)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return runDemo(ctx, *size, stdout)
}

func demoConfig(name, addr string) config.Config {
	c := config.Default()
	c.Name = name
	c.Mode = config.ModeNetstack
	c.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	c.Addr = netip.MustParsePrefix(addr)
	c.Control = ""
	c.DNS.Listen = config.DNSOff
	return c
}

func runDemo(ctx context.Context, size int, out io.Writer) (err error) {
	up, err := startDemoUpstream()
	if err != nil {
		return err
	}
	defer up.close()
	a, err := node.New(withDemoDNS(demoConfig("alpha", "10.200.1.1/16"), up))
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := node.New(demoConfig("beta", "10.200.2.1/16"))
	if err != nil {
		return err
	}
	defer b.Close()
	if err := a.SetStaticRoutes([]config.Peer{{Prefix: netip.PrefixFrom(b.Addr().Addr(), 32), VTEP: b.VTEP()}}); err != nil {
		return err
	}
	if err := b.SetStaticRoutes([]config.Peer{{Prefix: netip.PrefixFrom(a.Addr().Addr(), 32), VTEP: a.VTEP()}}); err != nil {
		return err
	}
	for _, n := range []*node.Node{a, b} {
		if err := n.Start(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "overlayd demo: two rootless nodes in one process, VXLAN VNI 42 over UDP on loopback\n")
	fmt.Fprintf(out, "  alpha  overlay %-15s  VTEP %s  (%s)\n", a.Addr(), a.VTEP(), a.Mode())
	fmt.Fprintf(out, "  beta   overlay %-15s  VTEP %s  (%s)\n\n", b.Addr(), b.VTEP(), b.Mode())

	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i*7 + i>>8)
	}
	want := sha256.Sum256(body)

	ln, err := b.Listen("tcp", ":80")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Served-By", "beta")
			http.ServeContent(w, r, "data", time.Time{}, bytes.NewReader(body))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		if e := <-done; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
			err = e
		}
	}()

	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return a.Dial(ctx, network, addr)
		},
	}}
	url := fmt.Sprintf("http://%s/data", b.Addr().Addr())
	fmt.Fprintf(out, "alpha: GET %s\n", url)
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("demo: GET across the overlay: %w", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("demo: reading the response: %w", err)
	}
	elapsed := time.Since(start)
	client.CloseIdleConnections()
	fmt.Fprintf(out, "beta:  %s, %d bytes served by %s in %v (%.1f MB/s)\n", resp.Status, len(got),
		resp.Header.Get("X-Served-By"), elapsed.Round(time.Millisecond), float64(len(got))/elapsed.Seconds()/1e6)
	if resp.StatusCode != http.StatusOK || sha256.Sum256(got) != want {
		return fmt.Errorf("demo: the response did not arrive intact (status %s, %d of %d bytes)", resp.Status, len(got), size)
	}
	fmt.Fprintf(out, "       sha256 matches: the body arrived byte-exact\n\n")

	for _, n := range []*node.Node{a, b} {
		st, err := n.Status(ctx)
		if err != nil {
			return err
		}
		t := st.Traffic
		var drops uint64
		for _, v := range t.Drops {
			drops += v
		}
		fmt.Fprintf(out, "%-6s outbound %6d packets %10d bytes | inbound %6d packets %10d bytes | arp %d asked %d answered | drops %d\n",
			st.Name, t.Outbound.Packets, t.Outbound.Bytes, t.Inbound.Packets, t.Inbound.Bytes, t.ARPAsked, t.ARPAnswers, drops)
	}
	fmt.Fprintln(out)
	if err := demoDNS(ctx, a, out); err != nil {
		return err
	}
	fmt.Fprintln(out, "demo ok")
	return nil
}
