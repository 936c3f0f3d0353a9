/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dmsetup: the control CLI of nbd-dm.  It sends one request to the
 * control socket of a running nbdkit-dm-plugin (control=SOCKET) and
 * prints the reply's payload, so that the verbs read like dmsetup's:
 *
 *     nbd-dmsetup -c /tmp/dm.ctl status
 *     nbd-dmsetup -c /tmp/dm.ctl reload --allow-resize vol.table
 *
 * The protocol is in include/nbd-dm/control.h: one request line of
 * shell-quoted words, then "ok N" and N payload lines, or "error MSG".
 * The verbs, their options and how many words they take come from the
 * spec the server checks against (control.h, core/control-verbs.c), so a
 * typo is a usage error (exit 2) that names the bad word even without a
 * server to ask, and --help lists what the server knows; what the verbs
 * do is the server's business.
 *
 * Exit status: 0 ok, 1 the command or the connection failed, 2 usage.
 *
 * Single-threaded.  Links only GLib (no ndm-core): control.h is included
 * for the protocol's constants and its verbs' spec, whose one file is
 * compiled in.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <fcntl.h>
#include <getopt.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "nbd-dm/control.h"
#include "stats-report.h"
#include "show.h"
/* NDM_JSON_VERSION: what help and version print without a server are
 * the server's payloads in shape, so they say its format version. */
#include "json.h"

#ifndef NDM_VERSION
#define NDM_VERSION "unknown"
#endif

#define PROG "nbd-dmsetup"

/* A reply line the client accepts.  The protocol bounds requests, not
 * replies; this bound only stops a broken server from eating memory (a
 * --json payload is one line, so allow far more than any request).
 */
#define REPLY_MAX_LINE (64u << 20)

enum exit_status {
  EXIT_OK = 0,
  EXIT_FAILED = 1,
  EXIT_USAGE = 2,
};

#define USAGE_LINE                                                      \
  "Usage: " PROG " [-c SOCKET] [--json] [-v] [--timeout SECS] COMMAND [NAME] " \
  "[ARGS]\n"                                                            \
  "       " PROG " [-c SOCKET] [--json] stats --interval SECS [--count N]\n"

/* A verb's words as this program takes them: a table is read from FILE
 * or given with --text, and sent as the one word the server wants.
 */
static const char *
cli_words (const struct ndm_control_verb *v)
{
  return v->table_word ? "{FILE | --text TEXT}" : NULL;
}

/* --help: a line per verb of the spec. */
static void
print_usage (void)
{
  const struct ndm_control_verb *v;
  const struct ndm_control_option *o;

  fputs (USAGE_LINE "Commands:\n", stdout);
  for (v = ndm_control_verbs; v->name != NULL; v++) {
    g_autofree char *usage = ndm_control_verb_usage (v, cli_words (v));

    printf ("  %s\n", usage);
  }
  fputs ("Options of commands:\n", stdout);
  for (o = ndm_control_options; o->name != NULL; o++) {
    g_autofree char *letter = o->short_name != 0 ?
      g_strdup_printf ("-%c, ", o->short_name) : g_strdup ("");
    g_autofree char *spelling =
      g_strdup_printf ("%s%s%s%s", letter, o->name, o->value ? " " : "",
                       o->value ? o->value : "");

    printf ("  %-24s %s\n", spelling, o->help);
  }
  fputs ("NAME, if given, must be the device's (name=).  FILE '-' is "
         "standard input.\nSOCKET defaults to $NBD_DM_CONTROL; help and "
         "version need none.\nOptions may follow the command; '--' ends "
         "them.  See nbd-dmsetup(8).\n", stdout);
}

/* --version, and version without a server. */
static void
print_version (void)
{
  printf ("%s %s (control protocol %d)\n", PROG, NDM_VERSION,
          NDM_CONTROL_PROTOCOL);
}

/* After a usage error: enough to fix a typo without scrolling. */
static void
print_short_usage (FILE *f)
{
  const struct ndm_control_verb *v;
  size_t col = strlen ("Commands:");

  fputs (USAGE_LINE "Commands:", f);
  for (v = ndm_control_verbs; v->name != NULL; v++) {
    /* Wrapped short of 80 columns, the width of a terminal's usage. */
    if (col + 1 + strlen (v->name) > 72) {
      fprintf (f, "\n%*s", (int) strlen ("Commands:"), "");
      col = strlen ("Commands:");
    }
    fprintf (f, " %s", v->name);
    col += 1 + strlen (v->name);
  }
  fputs ("   (" PROG " --help for their arguments)\n", f);
}

static bool verbose;

static void fail (const char *fmt, ...) G_GNUC_PRINTF (1, 2) G_GNUC_NORETURN;
static void usage_error (const char *fmt, ...)
  G_GNUC_PRINTF (1, 2) G_GNUC_NORETURN;

/* The command failed: say why and exit 1. */
static void
fail (const char *fmt, ...)
{
  va_list ap;

  fflush (stdout);
  fputs (PROG ": ", stderr);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  exit (EXIT_FAILED);
}

/* The command line is wrong: say why, remind of the usage, exit 2. */
static void
usage_error (const char *fmt, ...)
{
  va_list ap;

  fputs (PROG ": ", stderr);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  print_short_usage (stderr);
  exit (EXIT_USAGE);
}

static void
debug (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static void
debug (const char *fmt, ...)
{
  va_list ap;

  if (!verbose)
    return;
  fputs (PROG ": ", stderr);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

/* A printable copy of a line from the server, for error messages: a
 * broken server may send anything, and the message must stay one line.
 * Long lines are cut, since this is a diagnosis, not the payload.
 */
static char *
printable (const char *s, size_t len)
{
  g_autofree char *cut = g_strndup (s, MIN (len, 200));
  g_autofree char *esc = g_strescape (cut, NULL);

  return g_strdup_printf ("%s%s", esc, len > 200 ? "..." : "");
}

/* A non-negative decimal integer, as the protocol's sectors and event
 * numbers are written.  No sign, no "0x": the server would refuse them
 * anyway, and catching them here makes them usage errors.
 */
static bool
is_number (const char *s)
{
  guint64 v;

  return g_ascii_isdigit (s[0]) &&
    g_ascii_string_to_unsigned (s, 10, 0, G_MAXUINT64, &v, NULL);
}

/* --timeout, --interval: positive seconds, fractions allowed (tests
 * like 0.5).
 */
static double
parse_seconds (const char *option, const char *s)
{
  char *end;
  double v;

  errno = 0;
  v = g_ascii_strtod (s, &end);
  if (end == s || *end != '\0' || errno != 0 || !isfinite (v) || v <= 0 ||
      v > 1e9)
    usage_error ("%s: '%s' is not a positive number of seconds", option, s);
  return v;
}

/* Read a whole file, or standard input for "-". */
static char *
read_file (const char *path, size_t *len)
{
  g_autoptr (GError) err = NULL;
  GString *buf;
  char chunk[65536];
  size_t n;
  char *contents;
  gsize glen;

  if (strcmp (path, "-") != 0) {
    if (!g_file_get_contents (path, &contents, &glen, &err))
      fail ("reload: %s", err->message);
    *len = glen;
    return contents;
  }

  buf = g_string_new (NULL);
  while ((n = fread (chunk, 1, sizeof chunk, stdin)) > 0)
    g_string_append_len (buf, chunk, n);
  if (ferror (stdin))
    fail ("reload: reading the table from standard input: %s",
          g_strerror (errno));
  *len = buf->len;
  return g_string_free (buf, FALSE);
}

/* A table file as the one word "reload" takes: each line loses its '#'
 * comment and the lines are joined with ';', which table-text= also reads
 * as a line break.  Empty lines stay (as empty pieces), so the server's
 * "line N:" errors count the file's lines.  A ';' inside a line splits
 * it, as it does in table-text=: then the numbers drift from the file's.
 */
static char *
table_from_file (const char *path)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  size_t len, i, n;

  text = read_file (path, &len);
  if (memchr (text, '\0', len) != NULL)
    fail ("reload: '%s' holds a NUL byte: it is not a table file", path);

  lines = g_strsplit (text, "\n", -1);
  n = g_strv_length (lines);
  /* The newline ending the last line does not start another one. */
  if (n > 0 && lines[n - 1][0] == '\0') {
    g_free (lines[n - 1]);
    lines[--n] = NULL;
  }
  for (i = 0; i < n; i++) {
    char *hash = strchr (lines[i], '#');
    size_t l;

    if (hash != NULL)
      *hash = '\0';
    /* A file written on Windows: the '\r' is no blank to the server. */
    l = strlen (lines[i]);
    if (l > 0 && lines[i][l - 1] == '\r')
      lines[i][l - 1] = '\0';
  }
  return g_strjoinv (";", lines);
}

/* Append one word to the request.  Arguments are always quoted: the
 * server splits words as the shell does, and a table or message is full
 * of blanks.  The line can hold no newline, so neither can a word.
 */
static void
add_arg (GString *req, const char *what, const char *arg)
{
  g_autofree char *quoted = NULL;

  if (strchr (arg, '\n') != NULL) {
    g_autofree char *esc = printable (arg, strlen (arg));

    usage_error ("%s '%s' contains a newline, which the control protocol "
                 "cannot carry%s", what, esc,
                 strcmp (what, "--text") == 0 ?
                 " (separate table lines with ';')" : "");
  }
  quoted = g_shell_quote (arg);
  g_string_append_c (req, ' ');
  g_string_append (req, quoted);
}

/* Time left before the --timeout deadline, as poll wants it: -1 means no
 * deadline; 0 means the time is up.
 */
static int
time_left_ms (gint64 deadline)
{
  gint64 left;

  if (deadline < 0)
    return -1;
  left = deadline - g_get_monotonic_time ();
  if (left <= 0)
    return 0;
  return (int) MIN ((left + 999) / 1000, G_MAXINT);
}

/* Wait until fd is ready for events, or fail when the deadline passes. */
static void
wait_fd (int fd, short events, gint64 deadline)
{
  struct pollfd pfd = { .fd = fd, .events = events };
  int r;

  for (;;) {
    int ms = time_left_ms (deadline);

    if (ms == 0)
      fail ("timed out waiting for the server");
    r = poll (&pfd, 1, ms);
    if (r > 0)
      return;                   /* ready, or an error the caller will see */
    if (r < 0 && errno != EINTR)
      fail ("poll: %s", g_strerror (errno));
  }
}

static int
connect_control (const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (path) >= sizeof addr.sun_path)
    fail ("control socket path '%s' is too long (at most %zu bytes)",
          path, sizeof addr.sun_path - 1);
  memcpy (addr.sun_path, path, strlen (path) + 1);

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    fail ("socket: %s", g_strerror (errno));
  if (connect (fd, (struct sockaddr *) &addr, sizeof addr) < 0)
    fail ("cannot connect to control socket '%s': %s",
          path, g_strerror (errno));
  /* From here on every wait goes through poll, so --timeout covers the
   * whole exchange: a server that stops reading or never answers.
   */
  if (fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK) < 0)
    fail ("fcntl: %s", g_strerror (errno));
  return fd;
}

/* Send the whole request.  Returns false if the server hung up before
 * taking all of it: it may have said why in a reply, so the caller reads
 * on instead of failing here.
 */
static bool
send_request (int fd, const char *buf, size_t len, gint64 deadline)
{
  while (len > 0) {
    ssize_t r = send (fd, buf, len, MSG_NOSIGNAL);

    if (r < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_fd (fd, POLLOUT, deadline);
        continue;
      }
      if (errno == EPIPE || errno == ECONNRESET) {
        debug ("the server hung up while the request was being sent");
        return false;
      }
      fail ("sending the request: %s", g_strerror (errno));
    }
    buf += r;
    len -= r;
  }
  return true;
}

/* Buffered line reader on the socket. */
struct reader {
  int fd;
  gint64 deadline;
  GString *buf;                 /* bytes received, not yet returned */
  size_t start;                 /* where the next line begins in buf */
};

/* The next line, without its '\n', in *line (valid until the next call)
 * and its length in *len.  Returns false at EOF on a line boundary; EOF
 * inside a line, a read error or the deadline make the command fail.
 */
static bool
read_line (struct reader *rd, const char **line, size_t *len)
{
  size_t scanned = rd->start;

  for (;;) {
    char *nl = memchr (rd->buf->str + scanned, '\n', rd->buf->len - scanned);
    char chunk[65536];
    ssize_t r;

    if (nl != NULL) {
      *line = rd->buf->str + rd->start;
      *len = nl - *line;
      *nl = '\0';
      rd->start = nl + 1 - rd->buf->str;
      return true;
    }
    scanned = rd->buf->len;
    if (rd->buf->len - rd->start > REPLY_MAX_LINE)
      fail ("protocol error: a reply line is longer than %u bytes",
            REPLY_MAX_LINE);

    /* Drop the lines already returned before the buffer grows. */
    if (rd->start > 0) {
      g_string_erase (rd->buf, 0, rd->start);
      scanned -= rd->start;
      rd->start = 0;
    }

    r = recv (rd->fd, chunk, sizeof chunk, 0);
    if (r > 0) {
      g_string_append_len (rd->buf, chunk, r);
      continue;
    }
    if (r == 0) {
      if (rd->buf->len > rd->start) {
        g_autofree char *esc = printable (rd->buf->str + rd->start,
                                          rd->buf->len - rd->start);

        fail ("protocol error: the server closed the connection in the "
              "middle of the line '%s'", esc);
      }
      return false;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait_fd (rd->fd, POLLIN, rd->deadline);
      continue;
    }
    if (errno == ECONNRESET)
      return false;             /* hung up: as EOF, with its message */
    fail ("reading the reply: %s", g_strerror (errno));
  }
}

/* Read the reply and print its payload, a line at a time as it comes
 * ("wait" and a slow "suspend" print when they return), or keep it in
 * keep if not NULL.  Returns only if the server said "ok N" and sent N
 * lines.
 */
static void
read_reply (int fd, gint64 deadline, bool sent_all, GString *keep)
{
  struct reader rd = { .fd = fd, .deadline = deadline,
                       .buf = g_string_new (NULL) };
  const char *line;
  size_t len;
  guint64 n, i;

  if (!read_line (&rd, &line, &len)) {
    if (!sent_all)
      fail ("the server hung up while the request was being sent");
    fail ("protocol error: the server closed the connection without "
          "replying");
  }
  debug ("< %s", line);

  if (strlen (line) != len) {
    g_autofree char *esc = printable (line, len);

    fail ("protocol error: the reply '%s' holds a NUL byte", esc);
  }
  if (strcmp (line, "error") == 0)
    fail ("the server refused the command and gave no reason");
  if (g_str_has_prefix (line, "error "))
    fail ("%s", line + strlen ("error "));
  if (!g_str_has_prefix (line, "ok ") ||
      !g_ascii_isdigit (line[strlen ("ok ")]) ||
      !g_ascii_string_to_unsigned (line + strlen ("ok "), 10, 0, G_MAXUINT64,
                                   &n, NULL)) {
    g_autofree char *esc = printable (line, len);

    fail ("protocol error: expected 'ok N' or 'error MESSAGE', "
          "the server replied '%s'", esc);
  }

  for (i = 0; i < n; i++) {
    if (!read_line (&rd, &line, &len))
      fail ("protocol error: the server closed the connection after %"
            G_GUINT64_FORMAT " of the %" G_GUINT64_FORMAT " lines it "
            "announced", i, n);
    if (keep != NULL) {
      g_string_append_len (keep, line, len);
      g_string_append_c (keep, '\n');
      continue;
    }
    fwrite (line, 1, len, stdout);
    putchar ('\n');
    fflush (stdout);
  }
  g_string_free (rd.buf, TRUE);
}

/* The command line, once parsed. */
struct cmdline {
  const char *socket_path;      /* -c, or $NBD_DM_CONTROL */
  const struct ndm_control_verb *verb;
  const char *device;           /* the name given before the words, or NULL */
  GPtrArray *args;              /* positional words after the verb */
  const char *text;             /* reload --text */
  unsigned options;             /* NDM_CONTROL_OPT_* */
  const char *values[32];       /* of value options, by bit number */
  bool json;
  double timeout;               /* seconds; 0 for none */
  double interval;              /* stats --interval SECS; 0 for none */
  unsigned count;               /* stats --count N; 0: until Ctrl-C */
};

/* This program's own options; the verbs' come from the spec and get
 * getopt values from OPT_VERB on, by their index in ndm_control_options.
 */
enum {
  OPT_JSON = 256,
  OPT_TIMEOUT,
  OPT_INTERVAL,
  OPT_COUNT,
  OPT_TEXT,
  OPT_LIST_VERBS,
  OPT_LIST_OPTIONS,
  OPT_LIST_VALUED,
  OPT_VERB = 512,
};

static const struct option tool_options[] = {
  { "control", required_argument, NULL, 'c' },
  { "json", no_argument, NULL, OPT_JSON },
  { "verbose", no_argument, NULL, 'v' },
  { "timeout", required_argument, NULL, OPT_TIMEOUT },
  { "interval", required_argument, NULL, OPT_INTERVAL },
  { "count", required_argument, NULL, OPT_COUNT },
  { "text", required_argument, NULL, OPT_TEXT },
  { "help", no_argument, NULL, 'h' },
  { "version", no_argument, NULL, 'V' },
  /* For the bash completion (tools/nbd-dmsetup.bash-completion), so that
   * it completes what this program takes and keeps no list of its own.
   */
  { "list-verbs", no_argument, NULL, OPT_LIST_VERBS },
  { "list-options", optional_argument, NULL, OPT_LIST_OPTIONS },
  { "list-valued", no_argument, NULL, OPT_LIST_VALUED },
};
#define TOOL_SHORT "c:vhV"

/* getopt_long's table: this program's options, then the verbs'. */
static struct option *
all_options (GString *shorts)
{
  GArray *opts = g_array_new (TRUE, TRUE, sizeof (struct option));
  const struct ndm_control_option *o;

  g_string_append (shorts, "-:" TOOL_SHORT);
  g_array_append_vals (opts, tool_options, G_N_ELEMENTS (tool_options));
  for (o = ndm_control_options; o->name != NULL; o++) {
    struct option lo = {
      .name = o->name + 2,
      .has_arg = o->value != NULL ? required_argument : no_argument,
      .val = OPT_VERB + (int) (o - ndm_control_options),
    };

    g_array_append_val (opts, lo);
    if (o->short_name != 0)
      g_string_append_printf (shorts, "%c%s", o->short_name,
                              o->value != NULL ? ":" : "");
  }
  return (struct option *) g_array_free (opts, FALSE);
}

/* The option getopt_long could not take, as the user wrote it: a long
 * one is the word it last stepped past, a short one may sit inside a
 * word ("-vx") that getopt has not left yet.
 */
static const char *
bad_option (char *argv[], int short_opt)
{
  static char word[3];

  if (optind > 0 && g_str_has_prefix (argv[optind - 1], "--"))
    return argv[optind - 1];
  snprintf (word, sizeof word, "-%c", short_opt);
  return word;
}

/* An option as --list-options prints it: "--target=" (a value follows,
 * as bash-completion marks them) or "--json", then "-o=" or "-C" if it
 * has a letter too.
 */
static void
list_option (const char *name, bool value, int letter)
{
  printf ("%s%s\n", name, value ? "=" : "");
  if (letter != 0)
    printf ("-%c%s\n", letter, value ? "=" : "");
}

/* --list-valued: every spelling of every option that takes a value, the
 * program's and the verbs', one a line, so that the bash completion can
 * step over values with one call.
 */
static void
list_valued (void)
{
  const struct ndm_control_option *o;
  size_t i;

  for (i = 0; i < G_N_ELEMENTS (tool_options); i++)
    if (tool_options[i].has_arg == required_argument) {
      printf ("--%s\n", tool_options[i].name);
      if (tool_options[i].val < 256)
        printf ("-%c\n", tool_options[i].val);
    }
  for (o = ndm_control_options; o->name != NULL; o++)
    if (o->value != NULL) {
      puts (o->name);
      if (o->short_name != 0)
        printf ("-%c\n", o->short_name);
    }
}

/* --list-verbs, --list-options[=VERB]: one word a line, for the bash
 * completion: this program's options, or those of VERB.
 */
static void
list_words (bool verbs, const char *verb_name)
{
  const struct ndm_control_verb *v;
  const struct ndm_control_option *o;
  size_t i;

  if (verbs) {
    for (v = ndm_control_verbs; v->name != NULL; v++)
      puts (v->name);
    return;
  }
  if (verb_name == NULL) {
    for (i = 0; i < G_N_ELEMENTS (tool_options); i++) {
      const struct option *lo = &tool_options[i];
      g_autofree char *name = g_strdup_printf ("--%s", lo->name);

      /* --text is reload's, --interval and --count stats': listed
       * with them.
       */
      if (lo->val != OPT_LIST_VERBS && lo->val != OPT_LIST_OPTIONS &&
          lo->val != OPT_LIST_VALUED && lo->val != OPT_TEXT &&
          lo->val != OPT_INTERVAL && lo->val != OPT_COUNT)
        list_option (name, lo->has_arg == required_argument,
                     lo->val < 256 ? lo->val : 0);
    }
    return;
  }
  v = ndm_control_verb_lookup (verb_name);
  if (v == NULL)
    usage_error ("--list-options: unknown command '%s'", verb_name);
  for (o = ndm_control_options; o->name != NULL; o++)
    if (v->options & o->bit)
      list_option (o->name, o->value != NULL, o->short_name);
  if (v->table_word)
    list_option ("--text", true, 0);
  if (strcmp (v->name, "stats") == 0) {
    list_option ("--interval", true, 0);
    list_option ("--count", true, 0);
  }
}

/* Options may come before or after the verb, as with dmsetup; "--"
 * stops option parsing so that a message word may start with '-'.  The
 * value of an option is the rest of its word ("-cSOCK", "--text=T") or
 * the next word.  Exits on a usage error, or after --help or --version.
 */
static void
parse_cmdline (int argc, char *argv[], struct cmdline *cl)
{
  g_autoptr (GString) shorts = g_string_new (NULL);
  g_autofree struct option *longopts = all_options (shorts);
  const struct ndm_control_option *o;
  const char *verb_word;
  int c, i;

  cl->socket_path = g_getenv ("NBD_DM_CONTROL");
  cl->args = g_ptr_array_new ();

  /* "-" first in shorts: words that are no option come back in order
   * (as 1), so options may follow the verb whatever POSIXLY_CORRECT says;
   * ":" after it: a missing value is told apart from an unknown option.
   */
  opterr = 0;
  while ((c = getopt_long (argc, argv, shorts->str, longopts, NULL)) != -1) {
    switch (c) {
    case 1: g_ptr_array_add (cl->args, optarg); break;
    case 'c': cl->socket_path = optarg; break;
    case OPT_JSON: cl->json = true; break;
    case 'v': verbose = true; break;
    case OPT_TIMEOUT: cl->timeout = parse_seconds ("--timeout", optarg); break;
    case OPT_INTERVAL:
      cl->interval = parse_seconds ("--interval", optarg);
      break;
    case OPT_COUNT: {
      guint64 n;

      if (!g_ascii_isdigit (optarg[0]) ||
          !g_ascii_string_to_unsigned (optarg, 10, 1, G_MAXUINT, &n, NULL))
        usage_error ("--count: '%s' is not a positive number", optarg);
      cl->count = n;
      break;
    }
    case OPT_TEXT: cl->text = optarg; break;
    case 'h': print_usage (); exit (EXIT_OK);
    case 'V': print_version (); exit (EXIT_OK);
    case OPT_LIST_VERBS: list_words (true, NULL); exit (EXIT_OK);
    case OPT_LIST_OPTIONS: list_words (false, optarg); exit (EXIT_OK);
    case OPT_LIST_VALUED: list_valued (); exit (EXIT_OK);
    case ':':
      usage_error ("option '%s' needs a value", bad_option (argv, optopt));
    case '?': {
      const char *bad = bad_option (argv, optopt);
      g_autofree char *name = g_strndup (bad, strcspn (bad, "="));
      const struct option *lo;

      /* "--json=x": a known option that takes no value. */
      if (g_str_has_prefix (bad, "--") && strchr (bad, '=') != NULL)
        for (lo = longopts; lo->name != NULL; lo++)
          if (lo->has_arg == no_argument && strcmp (lo->name, name + 2) == 0)
            usage_error ("option '%s' takes no value", name);
      usage_error ("unknown option '%s'", bad);
    }
    default:
      /* A verb's option: by its index, or its short name (-C, -o). */
      if (c >= OPT_VERB)
        o = &ndm_control_options[c - OPT_VERB];
      else
        for (o = ndm_control_options; o->short_name != c; o++)
          g_assert (o->name != NULL);
      cl->options |= o->bit;
      if (o->value != NULL && !ndm_control_option_value_ok (o, optarg))
        usage_error ("option '%s': unknown value '%s' (expected %s)",
                     o->name, optarg, o->values);
      if (o->value != NULL)
        cl->values[g_bit_nth_lsf (o->bit, -1)] = optarg;
    }
  }
  /* After "--": words, whatever they start with. */
  for (i = optind; i < argc; i++)
    g_ptr_array_add (cl->args, argv[i]);

  if (cl->args->len == 0)
    usage_error ("no command given");
  verb_word = g_ptr_array_steal_index (cl->args, 0);
  cl->verb = ndm_control_verb_lookup (verb_word);
  if (cl->verb == NULL)
    usage_error ("unknown command '%s'", verb_word);
  for (o = ndm_control_options; o->name != NULL; o++)
    if (cl->options & ~cl->verb->options & o->bit)
      usage_error ("option '%s' does not apply to '%s'", o->name,
                   cl->verb->name);
  if (cl->text != NULL && !cl->verb->table_word)
    usage_error ("option '--text' does not apply to '%s'", cl->verb->name);
  if (cl->count > 0 && cl->interval == 0)
    usage_error ("option '--count' needs '--interval'");
  if (cl->interval > 0 &&
      (strcmp (cl->verb->name, "stats") != 0 || cl->options != 0))
    usage_error ("option '--interval' applies to 'stats' alone, without "
                 "--clear or --format");
  if (cl->json && cl->verb->via != NULL)
    usage_error ("option '--json' does not apply to '%s' (it renders "
                 "'%s --json')", cl->verb->name, cl->verb->via);
  if (ndm_control_verb_names_device (cl->verb,
                                     cl->args->len + (cl->text != NULL),
                                     (char **) cl->args->pdata))
    cl->device = g_ptr_array_steal_index (cl->args, 0);
}

/* The positional arguments, against the verb's spec.  A table word may
 * come from --text instead of FILE; the server's checks on what the words
 * say are repeated here only for numbers.
 */
static void
check_args (const struct cmdline *cl)
{
  const struct ndm_control_verb *v = cl->verb;
  GPtrArray *args = cl->args;
  g_autofree char *why = NULL;

  if (v->table_word) {
    if (cl->text != NULL && args->len > 0)
      usage_error ("%s: give either FILE ('%s') or --text, not both",
                   v->name, (char *) args->pdata[0]);
    if (cl->text == NULL && args->len == 0)
      usage_error ("%s: missing table FILE (or --text TEXT)", v->name);
  }
  why = ndm_control_verb_check_count (v, args->len + (cl->text != NULL),
                                      (char **) args->pdata);
  if (why != NULL)
    usage_error ("%s", why);
  if (v->number != NULL && args->len > 0 && !is_number (args->pdata[0]))
    usage_error ("%s: %s '%s' is not a number", v->name, v->number,
                 (char *) args->pdata[0]);
}

/* The request line, '\n' included: the verb and its options as they are
 * (fixed words of this program), then the arguments, quoted.
 */
static GString *
build_request (const struct cmdline *cl)
{
  GString *req = g_string_new (cl->verb->via != NULL ? cl->verb->via
                                : cl->verb->name);
  g_autofree char *table = NULL;
  const char *what = "argument";
  g_autoptr (GPtrArray) words = g_ptr_array_new ();
  const struct ndm_control_option *o;
  guint j;

  if (cl->json || cl->verb->via != NULL)
    g_string_append (req, " --json");
  for (o = ndm_control_options; o->name != NULL; o++)
    if ((cl->options & o->bit) && o->value != NULL) {
      g_autofree char *word =
        g_strdup_printf ("%s=%s", o->name,
                         cl->values[g_bit_nth_lsf (o->bit, -1)]);

      add_arg (req, o->name, word);
    }
    else if (cl->options & o->bit)
      g_string_append_printf (req, " %s", o->name);
  if (cl->device != NULL)
    g_ptr_array_add (words, (char *) cl->device);

  /* reload sends the table as its one word; a file becomes one here. */
  if (cl->verb->table_word) {
    if (cl->text != NULL) {
      g_ptr_array_add (words, (char *) cl->text);
      what = "--text";
    }
    else {
      table = table_from_file (cl->args->pdata[0]);
      g_ptr_array_add (words, table);
      what = "table file";
    }
  }
  else
    for (j = 0; j < cl->args->len; j++)
      g_ptr_array_add (words, cl->args->pdata[j]);

  /* The server, too, reads words starting with "--" as options: a word
   * like that (a message word, say) needs its "--" passed on.
   */
  for (j = 0; j < words->len; j++)
    if (g_str_has_prefix (words->pdata[j], "--")) {
      g_string_append (req, " --");
      break;
    }
  for (j = 0; j < words->len; j++)
    add_arg (req, what, words->pdata[j]);
  g_string_append_c (req, '\n');

  /* The server would refuse it and hang up; say so without trying. */
  if (req->len > NDM_CONTROL_MAX_LINE)
    fail ("%s: the request is %zu bytes, more than the control socket "
          "takes (%d bytes)", cl->verb->name, req->len,
          NDM_CONTROL_MAX_LINE);
  return req;
}

/* help and version without a socket: what this program knows, where
 * dmsetup, too, answers without asking the kernel.  With a socket they
 * ask the server, whose verbs and version may be other than ours.
 */
static bool
answer_locally (const struct cmdline *cl)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;
  const struct ndm_control_verb *v;

  if (strcmp (cl->verb->name, "help") == 0 && !cl->json) {
    print_usage ();
    return true;
  }
  if (strcmp (cl->verb->name, "version") == 0 && !cl->json) {
    print_version ();
    return true;
  }
  /* The server's shapes (nbd-dmsetup(8), JSON), this program's facts. */
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, NDM_JSON_VERSION);
  if (strcmp (cl->verb->name, "help") == 0) {
    json_builder_set_member_name (b, "verbs");
    json_builder_begin_array (b);
    for (v = ndm_control_verbs; v->name != NULL; v++) {
      g_autofree char *usage = ndm_control_verb_usage (v, cli_words (v));

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, v->name);
      json_builder_set_member_name (b, "usage");
      json_builder_add_string_value (b, usage);
      json_builder_end_object (b);
    }
    json_builder_end_array (b);
  }
  else if (strcmp (cl->verb->name, "version") == 0) {
    json_builder_set_member_name (b, "protocol");
    json_builder_add_int_value (b, NDM_CONTROL_PROTOCOL);
    json_builder_set_member_name (b, "program");
    json_builder_add_string_value (b, PROG);
    json_builder_set_member_name (b, "program_version");
    json_builder_add_string_value (b, NDM_VERSION);
  }
  else
    return false;
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, NULL);
  puts (text);
  return true;
}

/* stats --interval: one `stats --json` payload a call, on a connection
 * of its own, for tools/stats-report.c.
 */
static char *
fetch_stats (void *data)
{
  const struct cmdline *cl = data;
  static const char req[] = "stats --json\n";
  GString *payload = g_string_new (NULL);
  gint64 deadline = -1;
  bool sent_all;
  int fd;

  if (cl->timeout > 0)
    deadline = g_get_monotonic_time () +
      (gint64) (cl->timeout * G_USEC_PER_SEC);
  fd = connect_control (cl->socket_path);
  sent_all = send_request (fd, req, strlen (req), deadline);
  read_reply (fd, deadline, sent_all, payload);
  close (fd);
  return g_string_free (payload, FALSE);
}

int
main (int argc, char *argv[])
{
  struct cmdline cl = { 0 };
  g_autoptr (GString) req = NULL;
  g_autoptr (GString) reply = NULL;     /* a via verb's JSON, to render */
  g_autoptr (GError) err = NULL;
  gint64 deadline = -1;
  bool sent_all;
  int fd;

  parse_cmdline (argc, argv, &cl);
  check_args (&cl);
  if (cl.socket_path == NULL || cl.socket_path[0] == '\0') {
    if (answer_locally (&cl))
      return EXIT_OK;
    usage_error ("no control socket: use -c SOCKET or set NBD_DM_CONTROL");
  }
  if (cl.interval > 0)
    return stats_report_run (fetch_stats, &cl, cl.interval, cl.count,
                             cl.json);
  req = build_request (&cl);
  if (cl.verb->via != NULL)
    reply = g_string_new (NULL);

  /* The deadline starts before connecting: --timeout is how long the
   * user is willing to wait for the whole command.
   */
  if (cl.timeout > 0)
    deadline = g_get_monotonic_time () +
      (gint64) (cl.timeout * G_USEC_PER_SEC);

  debug ("connecting to '%s'", cl.socket_path);
  fd = connect_control (cl.socket_path);
  debug ("> %.*s", (int) req->len - 1, req->str);
  sent_all = send_request (fd, req->str, req->len, deadline);
  read_reply (fd, deadline, sent_all, reply);
  close (fd);
  g_ptr_array_free (cl.args, TRUE);
  if (reply != NULL && render_show (reply->str, stdout, &err) == -1)
    fail ("%s: %s", cl.verb->name, err->message);

  if (fflush (stdout) != 0 || ferror (stdout))
    fail ("writing to standard output: %s", g_strerror (errno));
  return EXIT_OK;
}
