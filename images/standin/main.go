// Command standin is a small stand-in for the FetchML API server and worker, used to exercise the
// fetchml-infra deployment without the real images. One static binary, four subcommands:
//
//	standin api                 HTTP GET /health on :9101 (FETCHML_HEALTH_PORT overrides)
//	standin worker              moves job ids fetchml:queue:pending -> fetchml:queue:running -> fetchml:jobs:done;
//	                            HTTP GET /health on :9102 (FETCHML_HEALTH_PORT overrides)
//	standin healthcheck URL     exit 0 iff GET URL answers 200 (for Docker HEALTHCHECK; the images have no curl)
//	standin probe [--timeout D] NAME:PORT/PATH...
//	                            GET PATH on every address NAME resolves to (each task of tasks.<service>), in
//	                            parallel; one JSON line each, {"target", "address", "status", "body", "error"},
//	                            sorted by target then address (probe.go; the image $PROBE_IMAGE runs it)
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
//
// The api's database (database.go), only when FETCHML_DATABASE_ADDR is set (unset: no database, as before):
//
//	FETCHML_DATABASE_ADDR           PostgreSQL host:port (e.g. postgres:5432); user postgres, database fetchml,
//	                                sslmode=disable
//	FETCHML_DATABASE_PASSWORD_FILE  path of a file whose first line is the password; read once at start, the
//	                                api exits 1 if it cannot (the log names the path, never the password)
//	FETCHML_SCHEMA_TARGET           the schema version this image's migrations bring the database to (baked in)
//	FETCHML_SCHEMA_MAX              the highest schema version this image runs on (baked in)
//
// The api (any mode but crash) applies the embedded migrations up to the target in the background and
// /health adds "database" (ok | unreachable), "schema", "schema_max" and, when the live schema is above
// FETCHML_SCHEMA_MAX, "schema_compatible": false; like Redis, a database outage does not change the api's
// status. The worker ignores these variables.
//
// Jobs (worker.go): FETCHML_JOB_SECONDS (default 0) is how long each stand-in job takes;
// FETCHML_STOP_GRACE_SECONDS (default 10) is the container's stop grace period, within which a job in
// flight at SIGTERM finishes or is put back on the pending list.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

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
	case "probe":
		os.Exit(runProbe(os.Args[2:]))
	case "version":
		fmt.Println(os.Getenv("FETCHML_VERSION"))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: standin api | worker | healthcheck URL | probe [--timeout D] NAME:PORT/PATH... | version")
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
	var db *database
	if role == "api" {
		var err error
		if db, err = newDatabase(version); err != nil {
			fmt.Fprintf(os.Stderr, "fetchml-api: %v\n", err)
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
		if db != nil { // not a verdict on the image: the status stays as Redis makes it
			db.report(r.Context(), body)
		}
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
	if db != nil {
		defer db.db.Close()
		limit := "not declared"
		if db.max >= 0 {
			limit = strconv.Itoa(db.max)
		}
		log.Printf("fetchml-api: database %s, migrating to schema %d in the background (runs on up to %s)", db.addr, db.target, limit)
		go db.migrateLoop(ctx)
	}
	var working chan struct{} // closed when the worker has finished or put back its job in flight
	if role == "worker" && m != "broken" {
		w, err := newWorker(rdb, store)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fetchml-worker: %v\n", err)
			return 1
		}
		working = make(chan struct{})
		go func() { defer close(working); w.run(ctx) }()
	}
	select {
	case err := <-errc:
		log.Printf("http server: %v", err)
		return 1
	case <-ctx.Done():
	}
	log.Printf("fetchml-%s: shutting down", role)
	if working != nil {
		<-working // bounded by the stop grace period: the job in flight finishes or goes back
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return 0
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
