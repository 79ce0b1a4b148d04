from fetchml_infra.cli import main

main()
