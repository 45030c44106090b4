/* The bgwf command: its main() runs the command line of the library. */
#include "cli.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
