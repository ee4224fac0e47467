/* role.c — the role names (see role.h). */
#include "role.h"

#include <string.h>

static const char *const names[] = {
    [CS_ROLE_PRIMARY] = "primary",
    [CS_ROLE_BACKUP] = "backup",
    [CS_ROLE_TRAFFIC] = "traffic",
};

const char *cs_role_name(cs_role role)
{
	return names[role];
}

int cs_role_parse(const char *s, cs_role *out)
{
	for (size_t r = 0; r < sizeof(names) / sizeof(names[0]); r++) {
		if (strcmp(s, names[r]) == 0) {
			*out = (cs_role)r;
			return 0;
		}
	}
	return -1;
}
