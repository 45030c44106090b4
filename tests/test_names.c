/* C tests for names.c: which names may become paths, and where they lead. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "names.h"

static void test_is_valid(void)
{
    static const char *const valid[] = { "simple", "a.b", "reports.daily_2", "A_1" };
    static const char *const invalid[] = { "", ".", "..", "a..b", ".a", "a.", "a/b", "../x",
                                           "a-b", "a b", "a\\b", "é" };

    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        CHECK(valid[i], names_is_valid(valid[i]));
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        CHECK(invalid[i], !names_is_valid(invalid[i]));
    CHECK("names_is_valid(NULL)", !names_is_valid(NULL));
    CHECK("token with dot", !names_is_valid_token("a.b"));
    CHECK("token plain", names_is_valid_token("action2__sub1"));
}

static void test_find_file(void)
{
    char folder[] = "/tmp/bgwf-names-XXXXXX";
    char *path = NULL, *error = NULL;

    CHECK("mkdtemp", mkdtemp(folder) != NULL);
    char *actions = NULL, *nested = NULL, *file = NULL;
    actions = malloc(strlen(folder) + 64);
    sprintf(actions, "%s/actions", folder);
    nested = malloc(strlen(folder) + 64);
    sprintf(nested, "%s/actions/reports", folder);
    file = malloc(strlen(folder) + 64);
    sprintf(file, "%s/actions/reports/daily.lua", folder);
    mkdir(actions, 0700);
    mkdir(nested, 0700);
    FILE *handle = fopen(file, "w");
    fputs("return {}\n", handle);
    fclose(handle);

    char *search = malloc(strlen(folder) + 32);
    sprintf(search, "/nonexistent:%s", folder);
    CHECK("find nested: rc", names_find_file(search, "actions", "action", "reports.daily", ".lua",
                                             &path, &error) == 0);
    CHECK_STR("find nested: path", file, path);
    free(path);

    CHECK("find missing: rc", names_find_file(search, "actions", "action", "reports.weekly",
                                              ".lua", &path, &error) == -1);
    CHECK("find missing: path", path == NULL);
    CHECK("find missing: message names the file",
          error && strstr(error, "actions/reports/weekly.lua") != NULL);
    CHECK("find missing: message names the folders",
          error && strstr(error, "/nonexistent") != NULL && strstr(error, folder) != NULL);
    free(error);

    CHECK("find invalid: rc", names_find_file(search, "actions", "action", "../etc", ".lua",
                                              &path, &error) == -1);
    CHECK("find invalid: error set", error != NULL);
    CHECK("find invalid: message",
          error != NULL && strstr(error, "invalid action name '../etc'") != NULL);
    free(error);

    unlink(file);
    rmdir(nested);
    rmdir(actions);
    rmdir(folder);
    free(file);
    free(nested);
    free(actions);
    free(search);
}

int main(void)
{
    test_is_valid();
    test_find_file();
    return check_report("test_names");
}
