from studio.cli.app import main

main()
