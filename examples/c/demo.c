/*
 * A C program on libengine: imports a root file system tarball as an image, runs a
 * container from it, reads its logs through a callback and removes it. Embedded (a state
 * root, opened in this process) or remote (a daemon's URL). Given a registry (host:port,
 * whose user `c` has the password `lang`), pushes the image there and pulls it back,
 * counting the progress messages. Builds an image from a Dockerfile too.
 *
 *   demo ROOT|URL ROOTFS.tar [REGISTRY]
 */
#include <engine.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int on_log(void *userdata, engine_stream stream, const char *time, const uint8_t *data,
                  size_t len) {
    (void)time;
    fwrite(data, 1, len, stream == ENGINE_STDERR ? stderr : stdout);
    ++*(int *)userdata;
    return 0;
}

/* Collects the actions of the events of one container (`userdata` points at its ID first). */
struct actions {
    const char *id;
    char seen[128];
};

static int on_event(void *userdata, const char *event_json) {
    struct actions *a = userdata;
    const char *action = strstr(event_json, "\"Action\":\"");
    if (!strstr(event_json, a->id) || !action)
        return 0;
    action += strlen("\"Action\":\"");
    size_t n = strcspn(action, "\""), used = strlen(a->seen);
    if (used + n + 2 < sizeof a->seen) {
        if (used)
            strcat(a->seen, " ");
        strncat(a->seen, action, n);
    }
    return 0;
}

/* The attached container says "waiting" on stderr until a file `go` appears in the directory
 * it has as /sync, which its first record here makes: by then attach is surely receiving,
 * so what the container writes after that must come. Its stdout records are shown and
 * counted. (A file rather than a signal: valgrind cannot run the pidfd calls a kill makes.) */
struct attached {
    const char *go;
    int told, records;
};

static int on_attached(void *userdata, engine_stream stream, const char *time,
                       const uint8_t *data, size_t len) {
    struct attached *a = userdata;
    (void)time;
    if (stream == ENGINE_STDERR) {
        if (!a->told) {
            FILE *f = fopen(a->go, "w");
            if (!f) {
                perror(a->go);
                return 1;
            }
            fclose(f);
            a->told = 1;
        }
        return 0;
    }
    fwrite(data, 1, len, stdout);
    ++a->records;
    return 0;
}

/* Counts progress messages, and those that say a layer is there: pushed or found in the
 * registry already, pulled or found here already. */
struct progress {
    int messages, done;
};

static void on_progress(void *userdata, const char *message_json) {
    struct progress *p = userdata;
    ++p->messages;
    if (strstr(message_json, "\"status\":\"Pushed\"") ||
        strstr(message_json, "\"status\":\"Layer already exists\"") ||
        strstr(message_json, "\"status\":\"Pull complete\"") ||
        strstr(message_json, "\"status\":\"Already exists\""))
        ++p->done;
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Reports a failed call; returns whether it failed. */
static int failed(engine_status status, const char *what) {
    if (status == ENGINE_OK)
        return 0;
    char msg[512];
    engine_last_error(msg, sizeof msg);
    fprintf(stderr, "%s: status %u: %s\n", what, (unsigned)status, msg);
    return 1;
}

/* Whether a call was refused as it should be: status `want`, a message with `words`. */
static int refused(engine_status status, engine_status want, const char *words, const char *what) {
    char msg[512] = "";
    if (status != ENGINE_OK)
        engine_last_error(msg, sizeof msg);
    if (status == want && strstr(msg, words))
        return 1;
    fprintf(stderr, "%s: status %u (\"%s\"), not %u with \"%s\"\n", what, (unsigned)status, msg,
            (unsigned)want, words);
    return 0;
}

/* Counts a build's steps, from its messages. */
static void on_build(void *userdata, const char *message_json) {
    if (strstr(message_json, "\"stream\":\"Step "))
        ++*(int *)userdata;
}

/* Builds demo:built from a Dockerfile written into the directory `dir`; prints what it saw. */
static int build_image(engine *e, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/Dockerfile", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 0;
    }
    fputs("FROM demo:c\nARG WHO\nRUN echo \"built by $WHO\" > /built\n", f);
    fclose(f);
    const char *options = "{\"tags\": [\"demo:built\"], \"buildargs\": {\"WHO\": \"C\"},"
                          " \"networkmode\": \"none\"}";
    int steps = 0;
    char *built = NULL;
    int ok = !failed(engine_image_build(e, dir, options, on_build, &steps, &built), "build") &&
             refused(engine_image_build(e, dir, "{\"tag\": []}", NULL, NULL, NULL),
                      ENGINE_INVALID_ARGUMENT, "unknown field `tag`", "build with a wrong option");
    unlink(path);
    printf("build: %d steps, id %s\n", steps, built && !strncmp(built, "sha256:", 7) ? "ok" : "?");
    engine_string_free(built);
    return ok && steps == 3 && !failed(engine_image_remove(e, "demo:built", false, NULL), "rmi");
}

/* Pushes demo:c to `registry` and pulls it back; prints what it saw. */
static int registry_round_trip(engine *e, const char *registry) {
    char ref[256];
    snprintf(ref, sizeof ref, "%s/c/demo:1", registry);
    const char *auth = "{\"username\": \"c\", \"password\": \"lang\"}";
    struct progress up = {0}, down = {0};
    char *digest = NULL;
    if (failed(engine_image_tag(e, "demo:c", ref), "tag") ||
        !refused(engine_image_push(e, ref, "{\"username\": \"c\", \"password\": \"no\"}",
                                   NULL, NULL, NULL),
                 ENGINE_PERMISSION_DENIED, "unauthorized", "push with a wrong password") ||
        failed(engine_image_push(e, ref, auth, on_progress, &up, &digest), "push"))
        return 0;
    int ok = digest && strncmp(digest, "sha256:", 7) == 0;
    if (failed(engine_image_remove(e, ref, false, NULL), "untag") ||
        failed(engine_image_pull(e, ref, NULL, auth, on_progress, &down), "pull") ||
        failed(engine_image_remove(e, ref, false, NULL), "untag"))
        ok = 0;
    printf("registry: pushed %d, pulled %d, digest %s\n", up.done, down.done,
           ok ? "ok" : "missing");
    engine_string_free(digest);
    return ok && up.done == 1 && down.done == 1 && up.messages > 1 && down.messages > 1;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s ROOT|URL ROOTFS.tar [REGISTRY]\n", argv[0]);
        return 2;
    }
    engine *e = NULL;
    engine_status status = strstr(argv[1], "://") ? engine_connect(argv[1], NULL, NULL, NULL, &e)
                                                  : engine_open(argv[1], &e);
    if (failed(status, "open"))
        return 1;
    int ok = 0;
    char *image = NULL, *id = NULL;
    if (failed(engine_image_import(e, argv[2], "demo:c", &image), "import"))
        goto out;

    /* A missing image is ENGINE_NOT_FOUND, its message readable; bad arguments are
     * refused, not followed. */
    const char *missing = "{\"Image\": \"no-such-image:1\"}";
    if (!refused(engine_container_create(e, missing, NULL, &id), ENGINE_NOT_FOUND,
                 "No such image: no-such-image:1", "create from a missing image") ||
        !refused(engine_container_start(e, NULL), ENGINE_NULL_ARGUMENT, "id is NULL",
                 "start with no ID") ||
        !refused(engine_container_create(e, "{not json", NULL, &id), ENGINE_BAD_ENCODING,
                 "body: invalid JSON", "create from a body that is not JSON"))
        goto out;

    long long since = now_ns();
    const char *body = "{\"Image\": \"demo:c\","
                       " \"Cmd\": [\"sh\", \"-c\", \"echo hello from C; echo to stderr >&2; exit 3\"],"
                       " \"HostConfig\": {\"NetworkMode\": \"none\"}}";
    if (failed(engine_container_create(e, body, NULL, &id), "create") ||
        failed(engine_container_start(e, id), "start"))
        goto out;
    int code = -1, records = 0;
    if (failed(engine_container_wait(e, id, &code), "wait") ||
        failed(engine_container_logs(e, id, false, on_log, &records), "logs"))
        goto out;
    printf("exit %d, %d log records\n", code, records);
    if (failed(engine_container_remove(e, id, false, false), "remove"))
        goto out;
    /* What happened to it, from the engine's events. */
    struct actions a = {.id = id, .seen = ""};
    if (failed(engine_events(e, since, now_ns(), on_event, &a), "events"))
        goto out;
    printf("events: %s\n", a.seen);

    /* Attached to a running container: its output from now until it stops. */
    engine_string_free(id);
    id = NULL;
    char dir[] = "/tmp/ketch-demo-XXXXXX", go[sizeof dir + 3], later[512];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        goto out;
    }
    snprintf(go, sizeof go, "%s/go", dir);
    snprintf(later, sizeof later,
             "{\"Image\": \"demo:c\","
             " \"Cmd\": [\"sh\", \"-c\", \"while [ ! -e /sync/go ]; do echo waiting >&2;"
             " sleep 0.1; done; echo attached; exit 7\"],"
             " \"HostConfig\": {\"NetworkMode\": \"none\", \"Binds\": [\"%s:/sync\"]}}",
             dir);
    struct attached at = {.go = go};
    int attached_code = -1;
    if (failed(engine_container_create(e, later, NULL, &id), "create") ||
        failed(engine_container_start(e, id), "start") ||
        failed(engine_container_attach(e, id, on_attached, &at), "attach"))
        goto out_dir;
    if (!at.told) {
        fprintf(stderr, "attach returned before the container's output\n");
        goto out_dir;
    }
    if (failed(engine_container_wait(e, id, &attached_code), "wait") ||
        failed(engine_container_remove(e, id, false, false), "remove"))
        goto out_dir;
    printf("attach: %d records, exit %d\n", at.records, attached_code);
    int built = build_image(e, dir);
    int pushed = argc < 4 || registry_round_trip(e, argv[3]);
    if (failed(engine_image_remove(e, "demo:c", false, NULL), "remove image"))
        goto out_dir;
    ok = code == 3 && records == 2 && at.records == 1 && attached_code == 7 && built && pushed;
out_dir:
    if (!ok && id)
        engine_container_remove(e, id, true, false); /* what a failure left running */
    unlink(go);
    rmdir(dir);
out:
    engine_string_free(image);
    engine_string_free(id);
    engine_close(e);
    return ok ? 0 : 1;
}
