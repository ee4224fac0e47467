/* members.c — the cluster's membership record (settings "members"): the
 * nodes of the cluster as the primary keeps them, read and written here
 * (see records.h); the agent follows it. */
#include "records.h"

#include <stdio.h>
#include <string.h>

static bool role_ok(const char *role)
{
	return strcmp(role, "primary") == 0 || strcmp(role, "backup") == 0 ||
	       strcmp(role, "traffic") == 0;
}

static bool copy(char *dst, size_t cap, const char *src)
{
	return src != NULL && (size_t)snprintf(dst, cap, "%s", src) < cap;
}

int rec_members_get(cs_txn *txn, rec_members *m, cs_err *err)
{
	Certsync__Members *rec;
	const void *val;
	size_t vlen;
	int rc = cs_txn_get(txn, CS_TBL_SETTINGS, REC_SETTINGS_MEMBERS,
	                    strlen(REC_SETTINGS_MEMBERS), &val, &vlen, err);

	m->n = 0;
	if (rc != 0)
		return rc;
	if ((rec = certsync__members__unpack(NULL, vlen, val)) == NULL)
		return cs_fail(err, CS_EIO, "the store's membership does not decode");
	rc = rec->n_nodes <= REC_MEMBERS_MAX ? 0 : -1;
	for (size_t i = 0; rc == 0 && i < rec->n_nodes; i++) {
		const Certsync__Member *r = rec->nodes[i];
		rec_member *x = &m->v[m->n++];

		if (!copy(x->name, sizeof(x->name), r->name) || x->name[0] == '\0' ||
		    !copy(x->role, sizeof(x->role), r->role) || !role_ok(x->role) ||
		    !copy(x->hostname, sizeof(x->hostname), r->hostname) ||
		    !copy(x->repl_endpoint, sizeof(x->repl_endpoint), r->repl_endpoint) ||
		    !copy(x->tls_endpoint, sizeof(x->tls_endpoint), r->tls_endpoint) ||
		    r->curve_public_key.len != REC_MEMBER_KEY_LEN)
			rc = -1;
		else
			memcpy(x->key, r->curve_public_key.data, REC_MEMBER_KEY_LEN);
	}
	certsync__members__free_unpacked(rec, NULL);
	return rc == 0 ? 0 : cs_fail(err, CS_EIO, "the store's membership is damaged");
}

int rec_members_put(cs_txn *txn, const rec_members *m, cs_err *err)
{
	Certsync__Members rec = CERTSYNC__MEMBERS__INIT;
	Certsync__Member v[REC_MEMBERS_MAX], *vp[REC_MEMBERS_MAX];

	for (size_t i = 0; i < m->n; i++) {
		const rec_member *x = &m->v[i];

		v[i] = (Certsync__Member)CERTSYNC__MEMBER__INIT;
		v[i].name = (char *)x->name;
		v[i].role = (char *)x->role;
		v[i].hostname = (char *)x->hostname;
		v[i].repl_endpoint = (char *)x->repl_endpoint;
		v[i].tls_endpoint = (char *)x->tls_endpoint;
		v[i].curve_public_key =
		    (ProtobufCBinaryData){REC_MEMBER_KEY_LEN, (uint8_t *)x->key};
		vp[i] = &v[i];
	}
	rec.n_nodes = m->n;
	rec.nodes = vp;
	return rec_put(txn, CS_TBL_SETTINGS, (const uint8_t *)REC_SETTINGS_MEMBERS,
	               strlen(REC_SETTINGS_MEMBERS), &rec.base, err);
}

const rec_member *rec_members_find(const rec_members *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i].name, name) == 0)
			return &m->v[i];
	return NULL;
}
