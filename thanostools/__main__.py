from thanostools.cli.main import main

main()
