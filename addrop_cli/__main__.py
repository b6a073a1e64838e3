from addrop_cli.cli import main

main()
