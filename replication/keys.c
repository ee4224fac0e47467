/* keys.c — CURVE key pairs of the replication sockets: generating, writing
 * and reading the key file, and parsing Z85 public keys from the
 * configuration.  The secret key is wiped from every buffer that held it. */
#include "repl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#define KEYFILE_MAX 512

int repl_key_parse(const char *z85, uint8_t key[REPL_KEY_LEN], cs_err *err)
{
	if (strlen(z85) != REPL_Z85_LEN || zmq_z85_decode(key, z85) == NULL)
		return cs_fail(err, CS_EUSAGE,
		               "'%.48s' is not a CURVE key: give the 40 Z85 characters "
		               "`certsync keygen` prints",
		               z85);
	return 0;
}

int repl_keygen(const char *path, char public_z85[REPL_Z85_LEN + 1], cs_err *err)
{
	char secret_z85[REPL_Z85_LEN + 1];
	char text[KEYFILE_MAX];
	int fd, len, rc = 0;

	if (zmq_curve_keypair(public_z85, secret_z85) != 0)
		return cs_fail(err, CS_EIO, "cannot make a CURVE key pair: %s",
		               zmq_strerror(zmq_errno()));
	len = snprintf(text, sizeof(text),
	               "# certsync replication key pair (CURVE); keep it secret, mode 0600\n"
	               "public = %s\nsecret = %s\n",
	               public_z85, secret_z85);
	sodium_memzero(secret_z85, sizeof(secret_z85));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		rc = cs_fail(err, errno == EEXIST ? CS_EEXIST : CS_EIO,
		             "%s: cannot create it: %s%s", path, strerror(errno),
		             errno == EEXIST ? "; a key file is never overwritten" : "");
	else if (write(fd, text, (size_t)len) != len || fsync(fd) != 0)
		rc = cs_fail(err, CS_EIO, "%s: cannot write it: %s", path, strerror(errno));
	if (fd >= 0 && close(fd) != 0 && rc == 0)
		rc = cs_fail(err, CS_EIO, "%s: cannot write it: %s", path, strerror(errno));
	if (rc != 0 && fd >= 0)
		unlink(path);
	sodium_memzero(text, sizeof(text));
	return rc;
}

/* Finds "name = VALUE" in text and decodes VALUE. */
static int key_line(const char *path, const char *text, const char *name, uint8_t key[REPL_KEY_LEN],
                    cs_err *err)
{
	size_t nlen = strlen(name);

	for (const char *line = text; *line != '\0';
	     line += strcspn(line, "\n"), line += *line != 0) {
		char z85[REPL_Z85_LEN + 1];
		const char *p = line;
		size_t n;

		if (strncmp(p, name, nlen) != 0)
			continue;
		p += nlen;
		p += strspn(p, " \t");
		if (*p++ != '=')
			continue;
		p += strspn(p, " \t");
		n = strcspn(p, " \t\r\n");
		if (n != REPL_Z85_LEN)
			break;
		memcpy(z85, p, n);
		z85[n] = '\0';
		n = zmq_z85_decode(key, z85) != NULL;
		sodium_memzero(z85, sizeof(z85));
		if (n)
			return 0;
		break;
	}
	return cs_fail(err, CS_EUSAGE,
	               "curve_secret_file %s: no valid '%s = <40 Z85 characters>' line; make "
	               "the file with `certsync keygen -o FILE`",
	               path, name);
}

int repl_key_load(const char *path, uint8_t pub[REPL_KEY_LEN], uint8_t sec[REPL_KEY_LEN],
                  cs_err *err)
{
	char text[KEYFILE_MAX + 1];
	uint8_t derived[REPL_KEY_LEN];
	char pz[REPL_Z85_LEN + 1], sz[REPL_Z85_LEN + 1];
	ssize_t n;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cs_fail(err, CS_EUSAGE, "curve_secret_file %s: cannot read it: %s", path,
		               strerror(errno));
	n = read(fd, text, KEYFILE_MAX);
	close(fd);
	if (n < 0)
		return cs_fail(err, CS_EUSAGE, "curve_secret_file %s: cannot read it: %s", path,
		               strerror(errno));
	text[n] = '\0';
	rc = key_line(path, text, "public", pub, err);
	if (rc == 0)
		rc = key_line(path, text, "secret", sec, err);
	sodium_memzero(text, sizeof(text));
	if (rc != 0)
		return -1;
	/* A public key that is not the secret's would fail every handshake
	 * with a message far from the cause. */
	zmq_z85_encode(sz, sec, REPL_KEY_LEN);
	rc = zmq_curve_public(pz, sz) == 0 && zmq_z85_decode(derived, pz) != NULL &&
	     memcmp(derived, pub, REPL_KEY_LEN) == 0;
	sodium_memzero(sz, sizeof(sz));
	if (!rc) {
		sodium_memzero(sec, REPL_KEY_LEN);
		return cs_fail(err, CS_EUSAGE,
		               "curve_secret_file %s: the public key is not the secret key's; make "
		               "a new pair with `certsync keygen -o FILE`",
		               path);
	}
	return 0;
}
