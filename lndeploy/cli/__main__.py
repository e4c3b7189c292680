from lndeploy.cli import main

main()
