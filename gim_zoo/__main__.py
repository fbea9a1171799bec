from gim_zoo.cli import main

main()
