/* role.h — a node's role in the cluster: the one role type of the agent's
 * configuration, replication and the status every command shows, and the
 * one table of the role names. */
#ifndef CS_ROLE_H
#define CS_ROLE_H

typedef enum cs_role { CS_ROLE_PRIMARY, CS_ROLE_BACKUP, CS_ROLE_TRAFFIC } cs_role;

/* "primary", "backup" or "traffic". */
const char *cs_role_name(cs_role role);
/* 0 and *out set for "primary", "backup" or "traffic"; -1 otherwise. */
int cs_role_parse(const char *s, cs_role *out);

#endif
