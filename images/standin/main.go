// Command standin is a small stand-in for the FetchML API server and worker, used to exercise the
// fetchml-infra deployment without the real images. One static binary, three subcommands:
//
//	standin api                 HTTP GET /health on :9101 (FETCHML_HEALTH_PORT overrides)
//	standin worker              moves job ids fetchml:queue:pending -> fetchml:queue:running -> fetchml:jobs:done;
//	                            HTTP GET /health on :9102 (FETCHML_HEALTH_PORT overrides)
//	standin healthcheck URL     exit 0 iff GET URL answers 200 (for Docker HEALTHCHECK; the images have no curl)
//
// Environment: FETCHML_VERSION, FETCHML_COMPLIANCE_MODE, FETCHML_REDIS_ADDR (host:port, default
// 127.0.0.1:6379), FETCHML_REDIS_PASSWORD, FETCHML_STANDIN_MODE = healthy (default) | broken | crash.
//
// Worker artifacts, only when FETCHML_MINIO_CREDENTIALS is set (unset: no artifacts, as before):
//
//	FETCHML_MINIO_CREDENTIALS   path of a file: access key on line 1, secret key on line 2; read once at
//	                            start, the worker exits 1 if it cannot (the log names the path, never the keys)
//	FETCHML_MINIO_ENDPOINT      MinIO host:port, plain HTTP (e.g. minio:9000)
//	FETCHML_ARTIFACTS_BUCKET    bucket to write to, default "artifacts"; the deployment creates it, not the worker
//
// Each job then gets the object jobs/<id>/result.json ({"job", "version", "finished"}) before it is recorded
// done; a job whose PUT fails stays on fetchml:queue:running.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/redis/go-redis/v9"
)

const (
	queuePending = "fetchml:queue:pending"
	queueRunning = "fetchml:queue:running"
	jobsDone     = "fetchml:jobs:done"
)

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetOutput(os.Stdout)
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "api":
		os.Exit(runServer("api", "9101"))
	case "worker":
		os.Exit(runServer("worker", "9102"))
	case "healthcheck":
		if len(os.Args) != 3 {
			usage()
		}
		os.Exit(healthcheck(os.Args[2]))
	case "version":
		fmt.Println(os.Getenv("FETCHML_VERSION"))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: standin api | worker | healthcheck URL | version")
	os.Exit(2)
}

func mode() string {
	m := strings.ToLower(strings.TrimSpace(os.Getenv("FETCHML_STANDIN_MODE")))
	if m == "" {
		return "healthy"
	}
	return m
}

func newRedis() *redis.Client {
	addr := os.Getenv("FETCHML_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	return redis.NewClient(&redis.Options{
		Addr:         addr,
		Password:     os.Getenv("FETCHML_REDIS_PASSWORD"),
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		MaxRetries:   -1, // health checks report the state now; no retry loops hiding an outage
	})
}

func ping(ctx context.Context, rdb *redis.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

func writeJSON(w http.ResponseWriter, code int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// runServer runs the api or worker role until SIGTERM/SIGINT and returns the exit code.
func runServer(role, defaultPort string) int {
	version := os.Getenv("FETCHML_VERSION")
	m := mode()
	switch m {
	case "healthy", "broken", "noncompliant":
	case "crash":
		fmt.Fprintf(os.Stderr, "fetchml-%s %s: FETCHML_STANDIN_MODE=crash, exiting with status 1\n", role, version)
		return 1
	default:
		fmt.Fprintf(os.Stderr, "fetchml-%s: unknown FETCHML_STANDIN_MODE %q (want healthy, broken, noncompliant or crash)\n", role, m)
		return 1
	}
	port := os.Getenv("FETCHML_HEALTH_PORT")
	if port == "" {
		port = defaultPort
	}
	var store *artifactStore
	if role == "worker" && os.Getenv("FETCHML_MINIO_CREDENTIALS") != "" {
		var err error
		if store, err = newArtifactStore(); err != nil {
			fmt.Fprintf(os.Stderr, "fetchml-worker: %v\n", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	rdb := newRedis()
	defer rdb.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if m == "broken" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "starting"})
			return
		}
		body := map[string]any{"status": "ok", "version": version, "redis": "ok"}
		if cm := os.Getenv("FETCHML_COMPLIANCE_MODE"); cm != "" {
			body["compliance_mode"] = cm
		}
		if m == "noncompliant" { // a build that lost its compliance setting: healthy, but not HIPAA
			body["compliance_mode"] = "none"
		}
		if err := ping(r.Context(), rdb); err != nil {
			body["redis"] = "unreachable"
			if role == "worker" { // a worker without its queue is not healthy
				body["status"] = "unhealthy"
				writeJSON(w, http.StatusServiceUnavailable, body)
				return
			}
		}
		writeJSON(w, http.StatusOK, body)
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("fetchml-%s %s (mode %s) listening on :%s, redis %s", role, version, m, port, rdb.Options().Addr)

	if store != nil {
		log.Printf("fetchml-worker: artifacts go to bucket %s at %s", store.bucket, store.client.EndpointURL().Host)
	}
	if role == "worker" && m != "broken" {
		go work(ctx, rdb, store)
	}
	select {
	case err := <-errc:
		log.Printf("http server: %v", err)
		return 1
	case <-ctx.Done():
	}
	log.Printf("fetchml-%s: shutting down", role)
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return 0
}

// work takes job ids from the pending list (atomically onto the running list), writes each one's
// artifact when store is not nil, then records them done.
func work(ctx context.Context, rdb *redis.Client, store *artifactStore) {
	useBLMove := true
	for ctx.Err() == nil {
		var id string
		var err error
		if useBLMove {
			id, err = rdb.BLMove(ctx, queuePending, queueRunning, "RIGHT", "LEFT", 2*time.Second).Result()
			if err != nil && strings.Contains(strings.ToLower(err.Error()), "unknown command") {
				useBLMove = false // Redis < 6.2
				continue
			}
		} else {
			id, err = rdb.BRPopLPush(ctx, queuePending, queueRunning, 2*time.Second).Result()
		}
		if errors.Is(err, redis.Nil) {
			continue // timed out with nothing queued
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Printf("worker: queue: %v", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		log.Printf("worker: took job %s", id)
		if store != nil {
			if err := store.put(ctx, id); err != nil {
				log.Printf("worker: artifact for job %s: %v", id, err)
				sleep(ctx, time.Second)
				continue // left on the running list
			}
		}
		_, err = rdb.TxPipelined(context.Background(), func(p redis.Pipeliner) error {
			p.SAdd(context.Background(), jobsDone, id)
			p.LRem(context.Background(), queueRunning, 1, id)
			return nil
		})
		if err != nil {
			log.Printf("worker: recording job %s done: %v (left on %s)", id, err, queueRunning)
			continue
		}
		log.Printf("worker: job %s done", id)
	}
}

// artifactStore writes one result object per job to a MinIO bucket.
type artifactStore struct {
	client  *minio.Client
	bucket  string
	version string
}

// newArtifactStore reads the credentials file named by FETCHML_MINIO_CREDENTIALS. Its errors name the
// path, never the file's contents.
func newArtifactStore() (*artifactStore, error) {
	path := os.Getenv("FETCHML_MINIO_CREDENTIALS")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("MinIO credentials: %v", err) // "open PATH: no such file or directory" and the like
	}
	lines := append(strings.SplitN(string(data), "\n", 3), "", "")
	access, secret := strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
	if access == "" || secret == "" {
		return nil, fmt.Errorf("MinIO credentials: %s must hold the access key on line 1 and the secret key on line 2", path)
	}
	bucket := os.Getenv("FETCHML_ARTIFACTS_BUCKET")
	if bucket == "" {
		bucket = "artifacts"
	}
	client, err := minio.New(os.Getenv("FETCHML_MINIO_ENDPOINT"), &minio.Options{
		Creds:  credentials.NewStaticV4(access, secret, ""),
		Secure: false, // plain HTTP inside the stack's network
	})
	if err != nil {
		return nil, fmt.Errorf("FETCHML_MINIO_ENDPOINT %q: %v", os.Getenv("FETCHML_MINIO_ENDPOINT"), err)
	}
	return &artifactStore{client: client, bucket: bucket, version: os.Getenv("FETCHML_VERSION")}, nil
}

// put writes jobs/<id>/result.json.
func (s *artifactStore) put(ctx context.Context, id string) error {
	body, err := json.Marshal(struct {
		Job      string `json:"job"`
		Version  string `json:"version"`
		Finished string `json:"finished"`
	}{id, s.version, time.Now().UTC().Format(time.RFC3339)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = s.client.PutObject(ctx, s.bucket, "jobs/"+id+"/result.json", bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "application/json"})
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func healthcheck(url string) int {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "%s: %s\n", url, resp.Status)
		return 1
	}
	return 0
}
