/*
 * cdp-sender: an example sender for cdp's outbox (README "Triggers and the
 * outbox").  It LISTENs on cdp_outbox, claims due messages with
 * cdp.claim_messages (several senders may run at once: each message goes
 * to one), hands each to a command (its payload on standard input; exit
 * status 0 means delivered) or prints it, and settles it with
 * cdp.mark_delivered or cdp.mark_failed.  Between batches it sleeps until
 * a notification arrives, or a second passes (retries and messages held
 * for the end of quiet hours fall due without a notification).
 *
 *   cdp-sender [--command CMD] [--channel CH] [--batch N] [--lease SECS]
 *              [--once] [--max N] [--quiet]
 *
 * Connection: the usual PG* environment variables.  --once stops when no
 * message is due; --max stops after N messages.  Each message is settled
 * with the attempt it was claimed at: if its lease (default 60 s, for a
 * batch of 10 by default) ran out meanwhile, the result is refused and
 * printed, since another sender has it.  Prints, per message, one
 * line: message_id, channel, the result and the payload.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/wait.h>

#include <libpq-fe.h>

typedef struct Options
{
	const char *command;
	const char *channel;
	int			batch;
	int			lease;
	int			once;
	long		max;
	int			quiet;
} Options;

static void
usage(void)
{
	fprintf(stderr, "usage: cdp-sender [--command CMD] [--channel CH] [--batch N] [--lease SECS] "
			"[--once] [--max N] [--quiet]\n");
	exit(2);
}

static void
parse(int argc, char **argv, Options *o)
{
	o->command = NULL;
	o->channel = NULL;
	o->batch = 10;
	o->lease = 60;
	o->once = 0;
	o->max = -1;
	o->quiet = 0;
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--once") == 0)
			o->once = 1;
		else if (strcmp(a, "--quiet") == 0)
			o->quiet = 1;
		else if (v == NULL)
			usage();
		else if (strcmp(a, "--command") == 0)
			o->command = v, i++;
		else if (strcmp(a, "--channel") == 0)
			o->channel = v, i++;
		else if (strcmp(a, "--batch") == 0)
			o->batch = atoi(v), i++;
		else if (strcmp(a, "--lease") == 0)
			o->lease = atoi(v), i++;
		else if (strcmp(a, "--max") == 0)
			o->max = atol(v), i++;
		else
			usage();
	}
	if (o->batch < 1 || o->lease < 1)
		usage();
}

/*
 * Runs a statement with parameters.  An error exits, unless soft: then it
 * is printed and NULL returned (a message settled meanwhile by another
 * sender must not strand the rest of the batch).
 */
static PGresult *
run_soft(PGconn *c, const char *sql, int n, const char *const *params, int soft)
{
	PGresult   *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "cdp-sender: %s", PQerrorMessage(c));
		PQclear(r);
		if (soft && PQstatus(c) == CONNECTION_OK)
			return NULL;
		PQfinish(c);
		exit(1);
	}
	return r;
}

static PGresult *
run(PGconn *c, const char *sql, int n, const char *const *params)
{
	return run_soft(c, sql, n, params, 0);
}

/*
 * Delivers one message: to the command (payload on its standard input), or
 * nowhere (printing is the delivery).  Returns NULL on success, else why.
 */
static const char *
deliver(const Options *o, const char *payload, char *why, size_t len)
{
	FILE	   *p;
	int			st;

	if (o->command == NULL)
		return NULL;
	p = popen(o->command, "w");
	if (p == NULL)
	{
		snprintf(why, len, "cannot run the command: %s", strerror(errno));
		return why;
	}
	fputs(payload, p);
	fputc('\n', p);
	st = pclose(p);
	if (st == 0)
		return NULL;
	if (st > 0 && WIFEXITED(st))
		snprintf(why, len, "command exited with status %d", WEXITSTATUS(st));
	else
		snprintf(why, len, "command failed");
	return why;
}

/* Claims one batch and settles each message; returns how many. */
static int
send_batch(PGconn *c, const Options *o, long *left)
{
	char		batch[16];
	char		lease[32];
	const char *claim[3];
	PGresult   *r;
	int			n;

	snprintf(batch, sizeof(batch), "%d", *left >= 0 && *left < o->batch ? (int) *left : o->batch);
	snprintf(lease, sizeof(lease), "%d seconds", o->lease);
	claim[0] = batch;
	claim[1] = lease;
	claim[2] = o->channel;
	r = run(c, "SELECT message_id, channel, payload::text, attempts FROM cdp.claim_messages($1::integer, $2::interval, $3)",
			3, claim);
	n = PQntuples(r);
	for (int i = 0; i < n; i++)
	{
		char		why[256];
		const char *id = PQgetvalue(r, i, 0);
		const char *failed = deliver(o, PQgetvalue(r, i, 2), why, sizeof(why));
		const char *settle[3] = {id, PQgetvalue(r, i, 3), failed};
		PGresult   *done = failed == NULL ?
			run_soft(c, "SELECT cdp.mark_delivered($1::bigint, attempt => $2::integer)", 2, settle, 1) :
			run_soft(c, "SELECT cdp.mark_failed($1::bigint, $3, attempt => $2::integer)", 3, settle, 1);

		if (done == NULL)
			failed = "not settled (see the error above)";
		PQclear(done);
		if (!o->quiet)
			printf("%s\t%s\t%s\t%s\n", id, PQgetvalue(r, i, 1), failed == NULL ? "delivered" : failed,
				   PQgetvalue(r, i, 2));
	}
	fflush(stdout);
	PQclear(r);
	if (*left >= 0)
		*left -= n;
	return n;
}

/* Waits for a notification on cdp_outbox, or a second. */
static void
wait_for_news(PGconn *c)
{
	int			sock = PQsocket(c);
	fd_set		in;
	struct timeval tv = {1, 0};
	PGnotify   *note;

	FD_ZERO(&in);
	FD_SET(sock, &in);
	if (select(sock + 1, &in, NULL, NULL, &tv) < 0 && errno != EINTR)
	{
		perror("cdp-sender: select");
		exit(1);
	}
	if (!PQconsumeInput(c))
	{
		fprintf(stderr, "cdp-sender: %s", PQerrorMessage(c));
		exit(1);
	}
	while ((note = PQnotifies(c)) != NULL)
		PQfreemem(note);
}

int
main(int argc, char **argv)
{
	Options		o;
	PGconn	   *c;
	long		left;

	parse(argc, argv, &o);
	signal(SIGPIPE, SIG_IGN);	/* a command that does not read its input fails alone */
	left = o.max;
	c = PQconnectdb("");
	if (PQstatus(c) != CONNECTION_OK)
	{
		fprintf(stderr, "cdp-sender: %s", PQerrorMessage(c));
		return 1;
	}
	PQclear(run(c, "LISTEN cdp_outbox", 0, NULL));
	while (left != 0)
	{
		if (send_batch(c, &o, &left) > 0)
			continue;			/* maybe more due */
		if (o.once)
			break;
		wait_for_news(c);
	}
	PQfinish(c);
	return 0;
}
