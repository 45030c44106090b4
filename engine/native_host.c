/* bgwf_main: the bgwf command line for a program that bundles its own
 * native actions. */
#include <stdio.h>

#include "bgwf.h"
#include "cli.h"
#include "native.h"

int bgwf_main(int argc, char **argv, const struct bgwf_action *actions, int count)
{
    if (count < 0 || (count > 0 && actions == NULL)) {
        fprintf(stderr, "bgwf: invalid native action list (count %d)\n", count);
        return 2;
    }
    for (int i = 0; i < count; i++) {
        const char *problem = native_check_action(&actions[i]);
        if (problem != NULL) {
            fprintf(stderr, "bgwf: cannot add native action %d ('%s'): %s\n", i,
                    actions[i].name ? actions[i].name : "(null)", problem);
            return 2;
        }
    }
    if (bgwf_add_actions(actions, count) != 0) {
        fputs("bgwf: adding the native actions failed: out of memory\n", stderr);
        return 2;
    }
    return cli_main(argc, argv);
}
