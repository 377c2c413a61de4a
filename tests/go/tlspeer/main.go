// tlspeer: a Go net/http server and client for kshark's TLS tests, built with Debian's
// Go (GOPATH mode, golang.org/x/net from golang-golang-x-net-dev).
//
//	tlspeer serve CERT KEY TLS_ADDR PLAIN_ADDR   h2 over TLS (ALPN) and h2c, one handler
//	tlspeer get BASE_URL                         the same three calls: https:// over TLS
//	                                             (h2 by ALPN), http:// as h2c
//	tlspeer load BASE_URL SECONDS CONNS [RATE]   GET /big?n=1024 from CONNS clients (one
//	                                             connection each) for SECONDS, at most RATE
//	                                             requests/s in all (0: as fast as it goes);
//	                                             prints "requests/s N"
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

func handler(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/echo":
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echoed", strconv.Itoa(len(b)))
		w.WriteHeader(201)
		w.Write(b)
	case "/big":
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = 'a' + byte(i%26)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(buf)
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(404)
		fmt.Fprintf(w, "no %s here\n", r.URL.Path)
	}
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: tlspeer serve CERT KEY TLS_ADDR PLAIN_ADDR | tlspeer get BASE_URL")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		h := http.HandlerFunc(handler)
		go func() {
			srv := &http.Server{Addr: os.Args[5], Handler: h2c.NewHandler(h, &http2.Server{})}
			fmt.Fprintln(os.Stderr, srv.ListenAndServe())
			os.Exit(1)
		}()
		srv := &http.Server{Addr: os.Args[4], Handler: h}
		fmt.Fprintln(os.Stderr, srv.ListenAndServeTLS(os.Args[2], os.Args[3]))
		os.Exit(1)
	case "load":
		base := os.Args[2]
		secs, _ := strconv.ParseFloat(os.Args[3], 64)
		conns, _ := strconv.Atoi(os.Args[4])
		rate := 0.0
		if len(os.Args) > 5 {
			rate, _ = strconv.ParseFloat(os.Args[5], 64)
		}
		var n int64
		end := time.Now().Add(time.Duration(secs * float64(time.Second)))
		var wg sync.WaitGroup
		for i := 0; i < conns; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// one client each: its own connection
				c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
				var gap time.Duration
				if rate > 0 {
					gap = time.Duration(float64(conns) / rate * float64(time.Second))
				}
				next := time.Now()
				for time.Now().Before(end) {
					resp, err := c.Get(base + "/big?n=1024")
					if err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					atomic.AddInt64(&n, 1)
					if gap > 0 {
						next = next.Add(gap)
						if d := time.Until(next); d > 0 {
							time.Sleep(d)
						}
					}
				}
			}()
		}
		wg.Wait()
		fmt.Printf("requests/s %.0f\n", float64(n)/secs)
	case "get":
		base := os.Args[2]
		var rt http.RoundTripper
		if strings.HasPrefix(base, "https://") {
			rt = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
		} else {
			rt = &http2.Transport{AllowHTTP: true, DialTLS: func(network, addr string, _ *tls.Config) (net.Conn, error) {
				return net.Dial(network, addr)
			}}
		}
		c := &http.Client{Transport: rt}
		do := func(method, path, body string) {
			req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			req.Header.Set("X-Kshark-Test", "go")
			resp, err := c.Do(req)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Println(resp.Proto, resp.StatusCode, len(b))
		}
		do("GET", "/missing", "")
		do("POST", "/echo", `{"order":42,"items":["sock","shoe"]}`)
		do("GET", "/big?n=1048576", "")
		// the connection stays a moment (its socket is looked up when its first call is read)
		time.Sleep(500 * time.Millisecond)
	}
}
