; ePix10k2M at MFX, written for peaknet-serve's tests in the style of OM's LCLS geometry
; files: 16 modules x 4 ASICs, Cheetah slab layout (module N at rows N*352).

; Camera length from the encoder is not used at MFX: set it when indexing
;clen = /LCLS/detector_1/EncoderValue
;coffset = 0.0

photon_energy = /LCLS/photon_energy_eV
adu_per_eV = 0.001   ; calibrated data in keV
res = 10000           ; 100 um pixels

data = /entry_1/data_1/data
dim0 = %
dim1 = ss
dim2 = fs

mask_file = epix10k2m-mask.h5
mask = /data/data
mask_good = 0x1
mask_bad = 0x0

; the central beam stop, in the lab frame (pixels)
bad_beamstop/min_x = -30
bad_beamstop/max_x = 30
bad_beamstop/min_y = -30
bad_beamstop/max_y = 30

; one ASIC with a hot column
bad_p3a2col/min_fs = 100
bad_p3a2col/max_fs = 101
bad_p3a2col/min_ss = 1232
bad_p3a2col/max_ss = 1407
bad_p3a2col/panel = p3a2

p0a0/min_fs = 0
p0a0/min_ss = 0
p0a0/max_fs = 191
p0a0/max_ss = 175
p0a0/fs = +0.999999x +0.001391y
p0a0/ss = -0.001391x +0.999999y
p0a0/corner_x = 19.510
p0a0/corner_y = 19.213

p0a1/min_fs = 192
p0a1/min_ss = 0
p0a1/max_fs = 383
p0a1/max_ss = 175
p0a1/fs = +0.999999x +0.001391y
p0a1/ss = -0.001391x +0.999999y
p0a1/corner_x = 213.510
p0a1/corner_y = 19.483

p0a2/min_fs = 0
p0a2/min_ss = 176
p0a2/max_fs = 191
p0a2/max_ss = 351
p0a2/fs = +0.999999x +0.001391y
p0a2/ss = -0.001391x +0.999999y
p0a2/corner_x = 19.263
p0a2/corner_y = 197.213

p0a3/min_fs = 192
p0a3/min_ss = 176
p0a3/max_fs = 383
p0a3/max_ss = 351
p0a3/fs = +0.999999x +0.001391y
p0a3/ss = -0.001391x +0.999999y
p0a3/corner_x = 213.262
p0a3/corner_y = 197.483

p1a0/min_fs = 0
p1a0/min_ss = 352
p1a0/max_fs = 191
p1a0/max_ss = 527
p1a0/fs = +0.999983x -0.005850y
p1a0/ss = +0.005850x +0.999983y
p1a0/corner_x = 19.823
p1a0/corner_y = 380.624

p1a1/min_fs = 192
p1a1/min_ss = 352
p1a1/max_fs = 383
p1a1/max_ss = 527
p1a1/fs = +0.999983x -0.005850y
p1a1/ss = +0.005850x +0.999983y
p1a1/corner_x = 213.820
p1a1/corner_y = 379.489

p1a2/min_fs = 0
p1a2/min_ss = 528
p1a2/max_fs = 191
p1a2/max_ss = 703
p1a2/fs = +0.999983x -0.005850y
p1a2/ss = +0.005850x +0.999983y
p1a2/corner_x = 20.865
p1a2/corner_y = 558.621

p1a3/min_fs = 192
p1a3/min_ss = 528
p1a3/max_fs = 383
p1a3/max_ss = 703
p1a3/fs = +0.999983x -0.005850y
p1a3/ss = +0.005850x +0.999983y
p1a3/corner_x = 214.861
p1a3/corner_y = 557.486

p2a0/min_fs = 0
p2a0/min_ss = 704
p2a0/max_fs = 191
p2a0/max_ss = 879
p2a0/fs = +1.000000x +0.000066y
p2a0/ss = -0.000066x +1.000000y
p2a0/corner_x = 20.256
p2a0/corner_y = 740.512

p2a1/min_fs = 192
p2a1/min_ss = 704
p2a1/max_fs = 383
p2a1/max_ss = 879
p2a1/fs = +1.000000x +0.000066y
p2a1/ss = -0.000066x +1.000000y
p2a1/corner_x = 214.256
p2a1/corner_y = 740.524

p2a2/min_fs = 0
p2a2/min_ss = 880
p2a2/max_fs = 191
p2a2/max_ss = 1055
p2a2/fs = +1.000000x +0.000066y
p2a2/ss = -0.000066x +1.000000y
p2a2/corner_x = 20.244
p2a2/corner_y = 918.512

p2a3/min_fs = 192
p2a3/min_ss = 880
p2a3/max_fs = 383
p2a3/max_ss = 1055
p2a3/fs = +1.000000x +0.000066y
p2a3/ss = -0.000066x +1.000000y
p2a3/corner_x = 214.244
p2a3/corner_y = 918.524

p3a0/min_fs = 0
p3a0/min_ss = 1056
p3a0/max_fs = 191
p3a0/max_ss = 1231
p3a0/fs = +0.999998x -0.001764y
p3a0/ss = +0.001764x +0.999998y
p3a0/corner_x = 21.326
p3a0/corner_y = 1099.562

p3a1/min_fs = 192
p3a1/min_ss = 1056
p3a1/max_fs = 383
p3a1/max_ss = 1231
p3a1/fs = +0.999998x -0.001764y
p3a1/ss = +0.001764x +0.999998y
p3a1/corner_x = 215.326
p3a1/corner_y = 1099.219

p3a2/min_fs = 0
p3a2/min_ss = 1232
p3a2/max_fs = 191
p3a2/max_ss = 1407
p3a2/fs = +0.999998x -0.001764y
p3a2/ss = +0.001764x +0.999998y
p3a2/corner_x = 21.640
p3a2/corner_y = 1277.561

p3a3/min_fs = 192
p3a3/min_ss = 1232
p3a3/max_fs = 383
p3a3/max_ss = 1407
p3a3/fs = +0.999998x -0.001764y
p3a3/ss = +0.001764x +0.999998y
p3a3/corner_x = 215.640
p3a3/corner_y = 1277.219

p4a0/min_fs = 0
p4a0/min_ss = 1408
p4a0/max_fs = 191
p4a0/max_ss = 1583
p4a0/fs = -0.000747x +1.000000y
p4a0/ss = -1.000000x -0.000747y
p4a0/corner_x = -18.630
p4a0/corner_y = 19.943

p4a1/min_fs = 192
p4a1/min_ss = 1408
p4a1/max_fs = 383
p4a1/max_ss = 1583
p4a1/fs = -0.000747x +1.000000y
p4a1/ss = -1.000000x -0.000747y
p4a1/corner_x = -18.775
p4a1/corner_y = 213.943

p4a2/min_fs = 0
p4a2/min_ss = 1584
p4a2/max_fs = 191
p4a2/max_ss = 1759
p4a2/fs = -0.000747x +1.000000y
p4a2/ss = -1.000000x -0.000747y
p4a2/corner_x = -196.630
p4a2/corner_y = 19.810

p4a3/min_fs = 192
p4a3/min_ss = 1584
p4a3/max_fs = 383
p4a3/max_ss = 1759
p4a3/fs = -0.000747x +1.000000y
p4a3/ss = -1.000000x -0.000747y
p4a3/corner_x = -196.775
p4a3/corner_y = 213.810

p5a0/min_fs = 0
p5a0/min_ss = 1760
p5a0/max_fs = 191
p5a0/max_ss = 1935
p5a0/fs = -0.000229x +1.000000y
p5a0/ss = -1.000000x -0.000229y
p5a0/corner_x = -380.256
p5a0/corner_y = 20.167

p5a1/min_fs = 192
p5a1/min_ss = 1760
p5a1/max_fs = 383
p5a1/max_ss = 1935
p5a1/fs = -0.000229x +1.000000y
p5a1/ss = -1.000000x -0.000229y
p5a1/corner_x = -380.300
p5a1/corner_y = 214.167

p5a2/min_fs = 0
p5a2/min_ss = 1936
p5a2/max_fs = 191
p5a2/max_ss = 2111
p5a2/fs = -0.000229x +1.000000y
p5a2/ss = -1.000000x -0.000229y
p5a2/corner_x = -558.256
p5a2/corner_y = 20.127

p5a3/min_fs = 192
p5a3/min_ss = 1936
p5a3/max_fs = 383
p5a3/max_ss = 2111
p5a3/fs = -0.000229x +1.000000y
p5a3/ss = -1.000000x -0.000229y
p5a3/corner_x = -558.300
p5a3/corner_y = 214.127

p6a0/min_fs = 0
p6a0/min_ss = 2112
p6a0/max_fs = 191
p6a0/max_ss = 2287
p6a0/fs = +0.004253x +0.999991y
p6a0/ss = -0.999991x +0.004253y
p6a0/corner_x = -740.323
p6a0/corner_y = 20.847

p6a1/min_fs = 192
p6a1/min_ss = 2112
p6a1/max_fs = 383
p6a1/max_ss = 2287
p6a1/fs = +0.004253x +0.999991y
p6a1/ss = -0.999991x +0.004253y
p6a1/corner_x = -739.498
p6a1/corner_y = 214.845

p6a2/min_fs = 0
p6a2/min_ss = 2288
p6a2/max_fs = 191
p6a2/max_ss = 2463
p6a2/fs = +0.004253x +0.999991y
p6a2/ss = -0.999991x +0.004253y
p6a2/corner_x = -918.322
p6a2/corner_y = 21.604

p6a3/min_fs = 192
p6a3/min_ss = 2288
p6a3/max_fs = 383
p6a3/max_ss = 2463
p6a3/fs = +0.004253x +0.999991y
p6a3/ss = -0.999991x +0.004253y
p6a3/corner_x = -917.497
p6a3/corner_y = 215.602

p7a0/min_fs = 0
p7a0/min_ss = 2464
p7a0/max_fs = 191
p7a0/max_ss = 2639
p7a0/fs = -0.000423x +1.000000y
p7a0/ss = -1.000000x -0.000423y
p7a0/corner_x = -1100.120
p7a0/corner_y = 20.186

p7a1/min_fs = 192
p7a1/min_ss = 2464
p7a1/max_fs = 383
p7a1/max_ss = 2639
p7a1/fs = -0.000423x +1.000000y
p7a1/ss = -1.000000x -0.000423y
p7a1/corner_x = -1100.202
p7a1/corner_y = 214.186

p7a2/min_fs = 0
p7a2/min_ss = 2640
p7a2/max_fs = 191
p7a2/max_ss = 2815
p7a2/fs = -0.000423x +1.000000y
p7a2/ss = -1.000000x -0.000423y
p7a2/corner_x = -1278.120
p7a2/corner_y = 20.111

p7a3/min_fs = 192
p7a3/min_ss = 2640
p7a3/max_fs = 383
p7a3/max_ss = 2815
p7a3/fs = -0.000423x +1.000000y
p7a3/ss = -1.000000x -0.000423y
p7a3/corner_x = -1278.202
p7a3/corner_y = 214.111

p8a0/min_fs = 0
p8a0/min_ss = 2816
p8a0/max_fs = 191
p8a0/max_ss = 2991
p8a0/fs = -1.000000x -0.000829y
p8a0/ss = +0.000829x -1.000000y
p8a0/corner_x = -19.924
p8a0/corner_y = -19.711

p8a1/min_fs = 192
p8a1/min_ss = 2816
p8a1/max_fs = 383
p8a1/max_ss = 2991
p8a1/fs = -1.000000x -0.000829y
p8a1/ss = +0.000829x -1.000000y
p8a1/corner_x = -213.924
p8a1/corner_y = -19.872

p8a2/min_fs = 0
p8a2/min_ss = 2992
p8a2/max_fs = 191
p8a2/max_ss = 3167
p8a2/fs = -1.000000x -0.000829y
p8a2/ss = +0.000829x -1.000000y
p8a2/corner_x = -19.776
p8a2/corner_y = -197.711

p8a3/min_fs = 192
p8a3/min_ss = 2992
p8a3/max_fs = 383
p8a3/max_ss = 3167
p8a3/fs = -1.000000x -0.000829y
p8a3/ss = +0.000829x -1.000000y
p8a3/corner_x = -213.776
p8a3/corner_y = -197.872

p9a0/min_fs = 0
p9a0/min_ss = 3168
p9a0/max_fs = 191
p9a0/max_ss = 3343
p9a0/fs = -0.999994x +0.003319y
p9a0/ss = -0.003319x -0.999994y
p9a0/corner_x = -19.704
p9a0/corner_y = -380.337

p9a1/min_fs = 192
p9a1/min_ss = 3168
p9a1/max_fs = 383
p9a1/max_ss = 3343
p9a1/fs = -0.999994x +0.003319y
p9a1/ss = -0.003319x -0.999994y
p9a1/corner_x = -213.703
p9a1/corner_y = -379.693

p9a2/min_fs = 0
p9a2/min_ss = 3344
p9a2/max_fs = 191
p9a2/max_ss = 3519
p9a2/fs = -0.999994x +0.003319y
p9a2/ss = -0.003319x -0.999994y
p9a2/corner_x = -20.295
p9a2/corner_y = -558.336

p9a3/min_fs = 192
p9a3/min_ss = 3344
p9a3/max_fs = 383
p9a3/max_ss = 3519
p9a3/fs = -0.999994x +0.003319y
p9a3/ss = -0.003319x -0.999994y
p9a3/corner_x = -214.294
p9a3/corner_y = -557.692

p10a0/min_fs = 0
p10a0/min_ss = 3520
p10a0/max_fs = 191
p10a0/max_ss = 3695
p10a0/fs = -0.999999x -0.001572y
p10a0/ss = +0.001572x -0.999999y
p10a0/corner_x = -20.011
p10a0/corner_y = -740.499

p10a1/min_fs = 192
p10a1/min_ss = 3520
p10a1/max_fs = 383
p10a1/max_ss = 3695
p10a1/fs = -0.999999x -0.001572y
p10a1/ss = +0.001572x -0.999999y
p10a1/corner_x = -214.010
p10a1/corner_y = -740.804

p10a2/min_fs = 0
p10a2/min_ss = 3696
p10a2/max_fs = 191
p10a2/max_ss = 3871
p10a2/fs = -0.999999x -0.001572y
p10a2/ss = +0.001572x -0.999999y
p10a2/corner_x = -19.731
p10a2/corner_y = -918.499

p10a3/min_fs = 192
p10a3/min_ss = 3696
p10a3/max_fs = 383
p10a3/max_ss = 3871
p10a3/fs = -0.999999x -0.001572y
p10a3/ss = +0.001572x -0.999999y
p10a3/corner_x = -213.731
p10a3/corner_y = -918.804

p11a0/min_fs = 0
p11a0/min_ss = 3872
p11a0/max_fs = 191
p11a0/max_ss = 4047
p11a0/fs = -1.000000x +0.000144y
p11a0/ss = -0.000144x -1.000000y
p11a0/corner_x = -20.504
p11a0/corner_y = -1099.494

p11a1/min_fs = 192
p11a1/min_ss = 3872
p11a1/max_fs = 383
p11a1/max_ss = 4047
p11a1/fs = -1.000000x +0.000144y
p11a1/ss = -0.000144x -1.000000y
p11a1/corner_x = -214.504
p11a1/corner_y = -1099.466

p11a2/min_fs = 0
p11a2/min_ss = 4048
p11a2/max_fs = 191
p11a2/max_ss = 4223
p11a2/fs = -1.000000x +0.000144y
p11a2/ss = -0.000144x -1.000000y
p11a2/corner_x = -20.529
p11a2/corner_y = -1277.494

p11a3/min_fs = 192
p11a3/min_ss = 4048
p11a3/max_fs = 383
p11a3/max_ss = 4223
p11a3/fs = -1.000000x +0.000144y
p11a3/ss = -0.000144x -1.000000y
p11a3/corner_x = -214.529
p11a3/corner_y = -1277.466

p12a0/min_fs = 0
p12a0/min_ss = 4224
p12a0/max_fs = 191
p12a0/max_ss = 4399
p12a0/fs = -0.000057x -1.000000y
p12a0/ss = +1.000000x -0.000057y
p12a0/corner_x = 20.427
p12a0/corner_y = -20.558

p12a1/min_fs = 192
p12a1/min_ss = 4224
p12a1/max_fs = 383
p12a1/max_ss = 4399
p12a1/fs = -0.000057x -1.000000y
p12a1/ss = +1.000000x -0.000057y
p12a1/corner_x = 20.415
p12a1/corner_y = -214.558

p12a2/min_fs = 0
p12a2/min_ss = 4400
p12a2/max_fs = 191
p12a2/max_ss = 4575
p12a2/fs = -0.000057x -1.000000y
p12a2/ss = +1.000000x -0.000057y
p12a2/corner_x = 198.427
p12a2/corner_y = -20.568

p12a3/min_fs = 192
p12a3/min_ss = 4400
p12a3/max_fs = 383
p12a3/max_ss = 4575
p12a3/fs = -0.000057x -1.000000y
p12a3/ss = +1.000000x -0.000057y
p12a3/corner_x = 198.415
p12a3/corner_y = -214.568

p13a0/min_fs = 0
p13a0/min_ss = 4576
p13a0/max_fs = 191
p13a0/max_ss = 4751
p13a0/fs = +0.003239x -0.999995y
p13a0/ss = +0.999995x +0.003239y
p13a0/corner_x = 379.849
p13a0/corner_y = -19.317

p13a1/min_fs = 192
p13a1/min_ss = 4576
p13a1/max_fs = 383
p13a1/max_ss = 4751
p13a1/fs = +0.003239x -0.999995y
p13a1/ss = +0.999995x +0.003239y
p13a1/corner_x = 380.478
p13a1/corner_y = -213.316

p13a2/min_fs = 0
p13a2/min_ss = 4752
p13a2/max_fs = 191
p13a2/max_ss = 4927
p13a2/fs = +0.003239x -0.999995y
p13a2/ss = +0.999995x +0.003239y
p13a2/corner_x = 557.849
p13a2/corner_y = -18.741

p13a3/min_fs = 192
p13a3/min_ss = 4752
p13a3/max_fs = 383
p13a3/max_ss = 4927
p13a3/fs = +0.003239x -0.999995y
p13a3/ss = +0.999995x +0.003239y
p13a3/corner_x = 558.477
p13a3/corner_y = -212.740

p14a0/min_fs = 0
p14a0/min_ss = 4928
p14a0/max_fs = 191
p14a0/max_ss = 5103
p14a0/fs = +0.001708x -0.999999y
p14a0/ss = +0.999999x +0.001708y
p14a0/corner_x = 739.450
p14a0/corner_y = -19.838

p14a1/min_fs = 192
p14a1/min_ss = 4928
p14a1/max_fs = 383
p14a1/max_ss = 5103
p14a1/fs = +0.001708x -0.999999y
p14a1/ss = +0.999999x +0.001708y
p14a1/corner_x = 739.781
p14a1/corner_y = -213.838

p14a2/min_fs = 0
p14a2/min_ss = 5104
p14a2/max_fs = 191
p14a2/max_ss = 5279
p14a2/fs = +0.001708x -0.999999y
p14a2/ss = +0.999999x +0.001708y
p14a2/corner_x = 917.449
p14a2/corner_y = -19.534

p14a3/min_fs = 192
p14a3/min_ss = 5104
p14a3/max_fs = 383
p14a3/max_ss = 5279
p14a3/fs = +0.001708x -0.999999y
p14a3/ss = +0.999999x +0.001708y
p14a3/corner_x = 917.781
p14a3/corner_y = -213.534

p15a0/min_fs = 0
p15a0/min_ss = 5280
p15a0/max_fs = 191
p15a0/max_ss = 5455
p15a0/fs = -0.001085x -0.999999y
p15a0/ss = +0.999999x -0.001085y
p15a0/corner_x = 1100.205
p15a0/corner_y = -19.284

p15a1/min_fs = 192
p15a1/min_ss = 5280
p15a1/max_fs = 383
p15a1/max_ss = 5455
p15a1/fs = -0.001085x -0.999999y
p15a1/ss = +0.999999x -0.001085y
p15a1/corner_x = 1099.994
p15a1/corner_y = -213.284

p15a2/min_fs = 0
p15a2/min_ss = 5456
p15a2/max_fs = 191
p15a2/max_ss = 5631
p15a2/fs = -0.001085x -0.999999y
p15a2/ss = +0.999999x -0.001085y
p15a2/corner_x = 1278.205
p15a2/corner_y = -19.477

p15a3/min_fs = 192
p15a3/min_ss = 5456
p15a3/max_fs = 383
p15a3/max_ss = 5631
p15a3/fs = -0.001085x -0.999999y
p15a3/ss = +0.999999x -0.001085y
p15a3/corner_x = 1277.994
p15a3/corner_y = -213.477

rigid_group_p0 = p0a0,p0a1,p0a2,p0a3
rigid_group_p1 = p1a0,p1a1,p1a2,p1a3
rigid_group_p2 = p2a0,p2a1,p2a2,p2a3
rigid_group_p3 = p3a0,p3a1,p3a2,p3a3
rigid_group_p4 = p4a0,p4a1,p4a2,p4a3
rigid_group_p5 = p5a0,p5a1,p5a2,p5a3
rigid_group_p6 = p6a0,p6a1,p6a2,p6a3
rigid_group_p7 = p7a0,p7a1,p7a2,p7a3
rigid_group_p8 = p8a0,p8a1,p8a2,p8a3
rigid_group_p9 = p9a0,p9a1,p9a2,p9a3
rigid_group_p10 = p10a0,p10a1,p10a2,p10a3
rigid_group_p11 = p11a0,p11a1,p11a2,p11a3
rigid_group_p12 = p12a0,p12a1,p12a2,p12a3
rigid_group_p13 = p13a0,p13a1,p13a2,p13a3
rigid_group_p14 = p14a0,p14a1,p14a2,p14a3
rigid_group_p15 = p15a0,p15a1,p15a2,p15a3
rigid_group_collection_modules = p0,p1,p2,p3,p4,p5,p6,p7,p8,p9,p10,p11,p12,p13,p14,p15
